"""`GET /metrics`: the process's metrics in Prometheus' text format (OpenMetrics when the scraper asks for it).
Never rate limited; the queue's gauges are read from the queue at each scrape."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State

from bot.jobs import Jobs
from bot.metrics import Metrics
from bot.readiness import NotReady

log = logging.getLogger("bot.metrics")

METRICS_PATH = "/metrics"


@get(
    METRICS_PATH,
    summary="Prometheus metrics of this process (and the queue's depth)",
    description="The series and their labels are listed in the README, section 'Metrics and logs'.",
    media_type="text/plain",
)
async def metrics(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    registry: Metrics = state.metrics
    jobs: Jobs = state.jobs
    try:
        counts = await jobs.counts()
    except NotReady as exc:
        log.debug("metrics without the queue's numbers: %s", exc)  # companion_queue_up 0 says it
        counts = None
    registry.observe_queue(counts, capacity=jobs.capacity)
    body, content_type = registry.exposition(request.headers.get("accept", ""))
    # As the encoder says (Litestar would add a second charset to a text/ media type).
    return Response(body, headers={"Content-Type": content_type})


ROUTES = [metrics]
