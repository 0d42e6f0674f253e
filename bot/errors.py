"""One exception tree for the service, and the handlers that render every error in one shape.

Every error body is ``{"error": {"type", "message", "retry_after"?}, "detail": message}``, whether it was
raised by our code, by Litestar (404, 405, validation, malformed JSON) or was unexpected (500, logged with
the request id; the body carries no traceback and no secret).
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from pydantic import BaseModel

from bot.context import current_request_id

log = logging.getLogger("bot.errors")


class AppError(Exception):
    """Base of every error the service answers with on purpose."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.retry_after = retry_after
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(AppError):
    status_code = 400
    error_type = "bad_request"
    default_message = "Bad request"


class Unauthorized(AppError):
    status_code = 401
    error_type = "unauthorized"
    default_message = "Missing or invalid credentials"


class NotFound(AppError):
    status_code = 404
    error_type = "not_found"
    default_message = "Not found"


class JobNotFound(NotFound):
    error_type = "job_not_found"
    default_message = "No job with that id"


class MethodNotAllowed(AppError):
    status_code = 405
    error_type = "method_not_allowed"
    default_message = "Method not allowed"


class PayloadTooLarge(AppError):
    status_code = 413
    error_type = "payload_too_large"
    default_message = "Request body too large"


class InvalidInput(AppError):
    status_code = 422
    error_type = "invalid_input"
    default_message = "Invalid input"


class RateLimitExceeded(AppError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    default_message = "Rate limit exceeded"


class InternalError(AppError):
    pass


class CodeAnalysisError(AppError):
    error_type = "code_analysis_error"
    default_message = "The code could not be analysed"


class ServerBusy(AppError):
    status_code = 503
    error_type = "server_busy"
    default_message = "The server is busy; retry later"


# Litestar's own HTTP exceptions, by status, when they are not one of ours.
_TYPES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limit_exceeded",
    503: "server_busy",
}


class ErrorInfo(BaseModel):
    type: str
    message: str
    retry_after: int | None = None


class ErrorBody(BaseModel):
    """The shape of every error answer (documented in the OpenAPI schema)."""

    error: ErrorInfo
    detail: str


def error_body(error_type: str, message: str, retry_after: float | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if retry_after is not None:
        error["retry_after"] = math.ceil(retry_after)
    return {"error": error, "detail": message}


def error_response(
    status: int,
    error_type: str,
    message: str,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    all_headers = dict(headers or {})
    if retry_after is not None:
        all_headers["Retry-After"] = str(math.ceil(retry_after))
    return Response(
        error_body(error_type, message, retry_after),
        status_code=status,
        headers=all_headers,
        media_type=MediaType.JSON,
    )


def _validation_message(exc: ValidationException) -> str:
    problems = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = item.get("key")
            text = str(item.get("message", "is invalid")).removeprefix("Value error, ")
            if key == "data" and text == "'data'":
                # Litestar's KeyError text for a request without a body.
                key, text = None, "the request body is empty: send a JSON object"
            problems.append(f"{key}: {text}" if key else str(text))
    if problems:
        return "Invalid input: " + "; ".join(problems)
    return f"Invalid input: {exc.detail}"


def _app_error(_: Request[Any, Any, Any], exc: AppError) -> Response[dict[str, Any]]:
    return error_response(
        exc.status_code, exc.error_type, exc.message, retry_after=exc.retry_after, headers=exc.headers
    )


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException) and exc.extra:
        # Litestar raises ValidationException both for schema errors (with `extra` naming the fields)
        # and for malformed bodies (without). The first is the client's data: 422.
        return error_response(422, "invalid_input", _validation_message(exc), headers=headers)
    status = exc.status_code
    if status >= 500:
        return _unexpected(_, exc)
    message = str(exc.detail) if exc.detail else "Bad request"
    if status == 400 and "decode" in message.lower():
        message = f"Malformed JSON body: {message}"
    return error_response(status, _TYPES_BY_STATUS.get(status, "bad_request"), message, headers=headers)


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    request_id = current_request_id()
    log.error("unhandled %s while serving request", type(exc).__name__, exc_info=exc)
    return error_response(
        500,
        "internal_error",
        f"Internal server error (request id {request_id}); the operator's logs have the cause",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    AppError: _app_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
