"""The wire format of the fake OpenAI chat-completions service, without I/O: replies, checks, bodies.

Request checks follow what the real service rejects (401, 404, 400 with OpenAI's error shape), limited to
what CrewAI 1.15 sends: `beta.chat.completions.parse` with a strict `json_schema` response format.
"""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema import ValidationError as SchemaViolation
from pydantic import BaseModel

CHAT_COMPLETIONS = "/v1/chat/completions"
CHARS_PER_TOKEN = 4  # the usage estimate when a reply gives no token counts
HANG_SECONDS = 60.0  # how long Reply.hang() keeps a request open by default
TRUNCATED_JSON = '{"findings": [{"path": "app/src/main/Foo.kt", "line": '  # Reply.malformed() default

NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY)."
)
WRONG_KEY = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
NOT_JSON = "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload."
FAULT_MESSAGES = {
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


@dataclass(frozen=True)
class ApiError:
    """One OpenAI error answer: `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class Kind(enum.Enum):
    CONTENT = "content"  # 200 with choices[0].message.content
    FAULT = "fault"  # an HTTP error with OpenAI's error body
    RAW = "raw"  # any JSON body, verbatim
    HANG = "hang"  # no answer for `delay` seconds, then the connection is closed
    DROP = "drop"  # the connection is closed without an answer


@dataclass(frozen=True, kw_only=True)
class Reply:
    """One scripted answer. Build it with the class methods; `delay` (seconds) is waited before answering."""

    kind: Kind
    text: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage: bool = True
    checked: bool = True
    error: ApiError | None = None
    payload: Any = None
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    @classmethod
    def content(
        cls,
        text: str | None,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        usage: bool = True,
        finish_reason: str = "stop",
        delay: float = 0.0,
    ) -> Reply:
        """A 200 whose `choices[0].message.content` is `text`; token counts are estimated unless given.

        `usage=False` leaves the `usage` field out of the body.
        """
        return cls(
            kind=Kind.CONTENT,
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage=usage,
            finish_reason=finish_reason,
            delay=delay,
        )

    @classmethod
    def json(cls, value: BaseModel | Mapping[str, Any] | list[Any], **options: Any) -> Reply:
        """Reply.content with `value` (a pydantic model, a dict or a list) serialised as JSON."""
        text = value.model_dump_json() if isinstance(value, BaseModel) else json.dumps(value)
        return cls.content(text, **options)

    @classmethod
    def malformed(cls, text: str = TRUNCATED_JSON, *, delay: float = 0.0) -> Reply:
        """A 200 whose content is deliberately wrong (truncated JSON by default); never schema-checked."""
        return cls(kind=Kind.CONTENT, text=text, checked=False, delay=delay)

    @classmethod
    def fault(
        cls,
        status: int,
        message: str | None = None,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Reply:
        """An HTTP error (429, 500, 503, ...) with OpenAI's error body and an optional `retry-after` header."""
        if status < 400:
            raise ValueError(f"a fault needs an error status, got {status}")
        default_type = "server_error" if status >= 500 else "invalid_request_error"
        if status == 429:
            default_type, code = "requests", code or "rate_limit_exceeded"
        error = ApiError(
            status=status,
            message=message or FAULT_MESSAGES.get(status, f"Fake error {status}."),
            type=type or default_type,
            param=param,
            code=code,
        )
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = f"{retry_after:g}"
        return cls(kind=Kind.FAULT, error=error, status=status, headers=tuple(extra.items()), delay=delay)

    @classmethod
    def raw(cls, payload: Any, *, status: int = 200, delay: float = 0.0) -> Reply:
        """Any JSON body, sent verbatim (a dict as `content`, a 200 carrying an `error`, ...)."""
        return cls(kind=Kind.RAW, payload=payload, status=status, delay=delay)

    @classmethod
    def hang(cls, seconds: float = HANG_SECONDS) -> Reply:
        """No answer for `seconds` (longer than the client's timeout), then the connection is closed."""
        return cls(kind=Kind.HANG, delay=seconds)

    @classmethod
    def drop(cls, *, delay: float = 0.0) -> Reply:
        """The connection is closed without an answer (the SDK raises APIConnectionError)."""
        return cls(kind=Kind.DROP, delay=delay)


def as_reply(item: Reply | str) -> Reply:
    return item if isinstance(item, Reply) else Reply.content(item)


def check_auth(authorization: str | None, api_key: str | None) -> ApiError | None:
    """401 without `Authorization: Bearer <key>`, or with another key than `api_key` when one is required."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return ApiError(401, NO_KEY)
    if api_key is not None and key.strip() != api_key:
        return ApiError(401, WRONG_KEY, code="invalid_api_key")
    return None


def parse_body(raw: bytes) -> Any:
    """The parsed JSON body, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def check_request(body: Any) -> ApiError | None:
    """400 for what the real service rejects: no JSON object, no `model`, no `messages`, a loose schema."""
    if not isinstance(body, dict):
        return ApiError(400, NOT_JSON)
    if not isinstance(body.get("model"), str) or not body["model"]:
        return ApiError(400, "you must provide a model parameter", param="model")
    messages = body.get("messages")
    if messages is None:
        return ApiError(400, "Missing required parameter: 'messages'.", "invalid_request_error", "messages")
    if not isinstance(messages, list) or not messages:
        return ApiError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return ApiError(400, f"Missing required parameter: 'messages[{index}].role'.", param="messages")
    if body.get("stream"):
        return ApiError(400, "The fake OpenAI server does not stream; send stream=false.", param="stream")
    if "response_format" in body:
        return check_response_format(body["response_format"])
    return None


def check_response_format(response_format: Any) -> ApiError | None:
    """Only `{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}`, strict-mode valid."""
    spec = response_format.get("json_schema") if isinstance(response_format, dict) else None
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        problem = "expected type 'json_schema'"
    elif not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        problem = "'json_schema.name' is required"
    elif spec.get("strict") is not True:
        problem = "'json_schema.strict' must be true"
    elif not isinstance(spec.get("schema"), dict):
        problem = "'json_schema.schema' must be an object"
    else:
        problem = strict_schema_problem(spec["schema"])
    if problem is None:
        return None
    return ApiError(400, f"Invalid 'response_format': {problem}.", param="response_format")


def strict_schema_problem(schema: dict[str, Any]) -> str | None:
    """Why OpenAI's strict mode would refuse `schema`: not JSON Schema, or an object that is not closed."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    if schema.get("type") != "object":
        return "the root schema must be of type 'object'"
    return _open_object(schema, "#")


def _open_object(node: Any, where: str) -> str | None:
    if not isinstance(node, dict):
        return None
    properties = node.get("properties")
    if isinstance(properties, dict) or node.get("type") == "object":
        if node.get("additionalProperties") is not False:
            return f"in {where}, 'additionalProperties' is required to be supplied and to be false"
        missing = sorted(set(properties or {}) - set(node.get("required", [])))
        if missing:
            return f"in {where}, 'required' must list every property; missing {missing}"
    children: list[tuple[str, Any]] = [(f"{where}/properties/{k}", v) for k, v in (properties or {}).items()]
    for keyword in ("$defs", "definitions"):
        children += [(f"{where}/{keyword}/{k}", v) for k, v in (node.get(keyword) or {}).items()]
    for keyword in ("anyOf", "allOf", "oneOf", "prefixItems"):
        children += [(f"{where}/{keyword}/{i}", v) for i, v in enumerate(node.get(keyword) or [])]
    children.append((f"{where}/items", node.get("items")))
    for child_where, child in children:
        problem = _open_object(child, child_where)
        if problem:
            return problem
    return None


def schema_violation(text: str | None, response_format: dict[str, Any]) -> str | None:
    """Why `text` is not a JSON document valid against the request's schema, or None when it is."""
    try:
        instance = json.loads(text or "")
    except json.JSONDecodeError as exc:
        return f"the scripted content is not JSON ({exc}); script Reply.malformed() to send it on purpose"
    try:
        Draft202012Validator(response_format["json_schema"]["schema"]).validate(instance)
    except SchemaViolation as exc:
        return f"the scripted content violates the response_format schema: {exc.message}"
    return None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_text(messages: list[dict[str, Any]]) -> str:
    """The text of every message: string contents and the `text` of content parts."""
    parts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(parts)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


def usage_of(reply: Reply, request: dict[str, Any]) -> Usage:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = max(1, estimate_tokens(prompt_text(request["messages"])))
    completion = reply.completion_tokens
    if completion is None:
        completion = estimate_tokens(reply.text or "")
    return Usage(prompt, completion)


@dataclass
class Completion:
    """A 200 chat.completion body and the usage it reports (None when the reply leaves usage out)."""

    body: dict[str, Any]
    usage: Usage | None = field(default=None)


def completion(reply: Reply, request: dict[str, Any], number: int) -> Completion:
    usage = usage_of(reply, request) if reply.usage else None
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request["model"],
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "finish_reason": reply.finish_reason,
                "logprobs": None,
                "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage.as_dict()
    return Completion(body, usage)
