"""Prometheus metrics: one :class:`Metrics` (its own ``CollectorRegistry``, never the process-global one) per
app and per worker process, handed to whatever records into it. Importing this module does nothing.

``serve`` exposes its registry at ``GET /metrics`` (the embedded worker records into the same one); in the Redis
mode ``python -m bot worker`` serves its own on WORKER_METRICS_HOST:WORKER_METRICS_PORT (:func:`serve_metrics`).

Labels are bounded: webhook events from a known set (else ``other``), outcomes and states from fixed
vocabularies, HTTP methods and status codes, job function names, the configured model. Never a repository,
a pull request, a SHA, a delivery or job id, a client address: those are in the logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, start_http_server
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from bot import app_version

if TYPE_CHECKING:
    from bot.jobs.queue import JobCounts
    from reviewer.models import Review

# GitHub events an App with this manifest receives (its own events plus the installation events every App gets).
WEBHOOK_EVENTS = frozenset({"pull_request", "issue_comment", "ping", "installation", "installation_repositories"})
OTHER = "other"
# Webhook answers, by the status of an error raised on the way (anything else: `error`).
WEBHOOK_FAILURES = {400: "bad_request", 401: "refused", 413: "too_large", 503: "busy"}
# Seconds: a rules-only chat job takes milliseconds, an LLM review of a large PR minutes (JOB_TIMEOUT_SECONDS).
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def webhook_event(name: str) -> str:
    """The `event` label of a delivery: GitHub's event name when it is one this App expects, else `other`."""
    return name if name in WEBHOOK_EVENTS else OTHER


def webhook_failure(exc: BaseException) -> str:
    """The `outcome` label of a delivery that ended in an error answer."""
    status = getattr(exc, "status_code", 500)
    return WEBHOOK_FAILURES.get(status, "error") if isinstance(status, int) else "error"


class _QueueCollector:
    """Queue gauges from the numbers read at the last scrape (the queue is async, a collector is not); none of
    them while the queue does not answer, when only `companion_queue_up 0` is said."""

    def __init__(self) -> None:
        self.counts: JobCounts | None = None
        self.capacity = 0
        self.answered = False

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.counts)

    def _families(self, counts: JobCounts | None) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "companion_queue_up", "1 when the queue answered at this scrape, else 0", value=int(self.answered)
        )
        jobs = GaugeMetricFamily("companion_jobs", "Jobs in the queue by state, read at scrape time", labels=["state"])
        depth = GaugeMetricFamily(
            "companion_queue_depth", "Jobs queued, running or waiting for a retry: what MAX_CONCURRENT_JOBS caps"
        )
        capacity = GaugeMetricFamily("companion_queue_capacity", "MAX_CONCURRENT_JOBS")
        if counts is not None:
            jobs.add_metric(["queued"], counts.queued)
            jobs.add_metric(["running"], counts.running)
            depth.add_metric([], counts.pending)
            capacity.add_metric([], self.capacity)
        yield from (jobs, depth, capacity)


class Metrics:
    """Every series of the service, in one registry. Methods are cheap and never raise for a label value.
    `queue`: whether this registry has the queue's gauges (a web app reads them at each scrape; a worker does not
    serve them, the web replicas do)."""

    def __init__(self, *, queue: bool = True) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        Info("companion_build", "The running version", registry=registry).info({"version": app_version()})
        self.webhook_deliveries = Counter(
            "companion_webhook_deliveries",
            "GitHub webhook deliveries by event and what was done with them",
            ["event", "outcome"],
            registry=registry,
        )
        self.rate_limited = Counter(
            "companion_rate_limited",
            "Requests or reviews refused by a limit: review and poll (REST, 429), installation (a throttled review)",
            ["limit"],
            registry=registry,
        )
        self.jobs_in_progress = Gauge(
            "companion_jobs_in_progress", "Jobs this process is running now", ["function"], registry=registry
        )
        self.job_duration = Histogram(
            "companion_job_duration_seconds",
            "Job runs by function and outcome (done, retry, error, timeout, cancelled)",
            ["function", "outcome"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.pull_reviews = Counter(
            "companion_pull_reviews",
            "Pull-request review jobs by outcome (posted, skipped, throttled)",
            ["outcome"],
            registry=registry,
        )
        self.llm_reviews = Counter(
            "companion_llm_reviews",
            "Reviews that used the LLM, by model and whether the LLM part was complete",
            ["model", "complete"],
            registry=registry,
        )
        self.llm_calls = Counter("companion_llm_calls", "LLM calls the API answered", ["model"], registry=registry)
        self.llm_prompt_tokens = Counter(
            "companion_llm_prompt_tokens", "Prompt tokens as the API reported them", ["model"], registry=registry
        )
        self.llm_completion_tokens = Counter(
            "companion_llm_completion_tokens",
            "Completion tokens as the API reported them",
            ["model"],
            registry=registry,
        )
        self.llm_cost = Counter(
            "companion_llm_cost_dollars",
            "LLM cost in US dollars from the price table (models without a price are not counted)",
            ["model"],
            registry=registry,
        )
        self.github_requests = Counter(
            "companion_github_requests",
            "GitHub API requests by method and answer (status code and class; network_error: no answer)",
            ["method", "code", "status_class"],
            registry=registry,
        )
        self.github_rate_limited = Counter(
            "companion_github_rate_limited",
            "GitHub rate limits met (primary, secondary) and what was done (retried after a short wait, gave_up)",
            ["kind", "outcome"],
            registry=registry,
        )
        self._queue = _QueueCollector()
        if queue:
            registry.register(self._queue)

    # --- recording -------------------------------------------------------------------------------------------

    def webhook(self, event: str, outcome: str) -> None:
        self.webhook_deliveries.labels(webhook_event(event), outcome).inc()

    def rejected(self, limit: str) -> None:
        self.rate_limited.labels(limit).inc()

    @contextmanager
    def job(self, function: str) -> Iterator[JobRun]:
        """Time one run of a job; the caller sets `run.outcome` (it stays `cancelled` if the run never ends)."""
        run = JobRun()
        started = time.perf_counter()
        self.jobs_in_progress.labels(function).inc()
        try:
            yield run
        finally:
            self.jobs_in_progress.labels(function).dec()
            self.job_duration.labels(function, run.outcome).observe(time.perf_counter() - started)

    def pull_review(self, outcome: str) -> None:
        self.pull_reviews.labels(outcome).inc()

    def llm_review(self, review: Review) -> None:
        """The LLM usage of one review (nothing for a rules-only review)."""
        if not review.llm_model:
            return
        model = review.llm_model
        self.llm_reviews.labels(model, str(not review.llm_incomplete).lower()).inc()
        self.llm_calls.labels(model).inc(review.llm_calls)
        self.llm_prompt_tokens.labels(model).inc(review.llm_prompt_tokens)
        self.llm_completion_tokens.labels(model).inc(review.llm_completion_tokens)
        if review.llm_cost is not None:
            self.llm_cost.labels(model).inc(review.llm_cost)

    def github_response(self, method: str, status: int) -> None:
        self.github_requests.labels(method, str(status), f"{status // 100}xx").inc()

    def github_network_error(self, method: str) -> None:
        self.github_requests.labels(method, "network_error", "network_error").inc()

    def github_limit(self, kind: str, *, retried: bool) -> None:
        self.github_rate_limited.labels(kind, "retried" if retried else "gave_up").inc()

    def observe_queue(self, counts: JobCounts | None, *, capacity: int) -> None:
        """The queue as read for this scrape; None: it did not answer."""
        self._queue.counts, self._queue.capacity, self._queue.answered = counts, capacity, counts is not None

    # --- exposition ------------------------------------------------------------------------------------------

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format the scraper asked for (Prometheus text by default): (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type


@dataclass(slots=True)
class JobRun:
    outcome: str = "cancelled"


@dataclass(slots=True)
class MetricsServer:
    """The worker's own metrics endpoint (a thread), for processes that serve no HTTP of their own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(metrics: Metrics, host: str, port: int) -> MetricsServer:
    """Serve `metrics` at http://host:port/ (any path); port 0 picks a free one. Raises OSError if it cannot
    listen."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server, thread)
