"""Command line: ``python -m bot serve | worker | review | check-config``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot import NAME, app_version
from bot.settings import ConfigError, Settings, load_settings

EXIT_CONFIG = 2


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(EXIT_CONFIG) from None


def config_warnings(settings: Settings) -> list[str]:
    """What works differently than an operator may expect with these settings."""
    notes = []
    if settings.github_webhook_secret is None:
        notes.append("GITHUB_WEBHOOK_SECRET is not set: GitHub webhook deliveries are refused (fail closed).")
    if settings.github_app_id is None or settings.private_key() is None:
        notes.append("GITHUB_APP_ID / GITHUB_PRIVATE_KEY(_PATH) not set: the bot cannot call GitHub.")
    if not settings.llm_configured and settings.reviewer != "rules":
        notes.append("OPENAI_API_KEY is not set: reviews are rules only (no LLM).")
    if settings.queue_is_redis:
        notes.append("QUEUE_URL is Redis: `serve` only enqueues; run `python -m bot worker` processes to run jobs.")
    if not settings.api_keys:
        notes.append("API_KEYS is not set: the REST API is open to anyone who can reach it.")
    return notes


def cmd_check_config(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    shown = settings.masked()
    width = max(len(name) for name in shown)
    for name, value in shown.items():
        print(f"{name.ljust(width)}  {value}")  # noqa: T201
    for note in config_warnings(settings):
        print(f"note: {note}")  # noqa: T201
    print("configuration OK")  # noqa: T201
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from bot.app import create_app  # noqa: PLC0415
    from bot.logs import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        # The app resolves X-Forwarded-For itself (FORWARDED_ALLOW_IPS), the same under any server.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    return 0


def cmd_worker(_: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    import asyncio  # noqa: PLC0415

    from bot.jobs import Jobs, build_worker  # noqa: PLC0415 - only this command runs jobs
    from bot.jobs.tasks import service_tasks  # noqa: PLC0415
    from bot.jobs.worker import close_tasks, size_thread_pool  # noqa: PLC0415
    from bot.llm import crew_reviewer  # noqa: PLC0415
    from bot.logs import configure_logging  # noqa: PLC0415
    from bot.metrics import Metrics, serve_metrics  # noqa: PLC0415
    from bot.throttle import close_storage, create_storage  # noqa: PLC0415

    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    metrics = Metrics(queue=False)  # this process's registry, shared by every job function (the web has the queue's)
    server = None
    if settings.worker_metrics_port:
        host, port = settings.worker_metrics_host, settings.worker_metrics_port
        log = logging.getLogger("bot.metrics")
        try:
            server = serve_metrics(metrics, host, port)
        except OSError as exc:
            if "worker_metrics_port" in settings.model_fields_set:  # asked for: a port it cannot have is an error
                print(f"{NAME}: WORKER_METRICS_PORT: cannot listen on {host}:{port}: {exc}", file=sys.stderr)  # noqa: T201
                return EXIT_CONFIG
            # The default (9100) may be another worker's on this host, or node_exporter's: run jobs all the same.
            log.warning("no worker metrics: %s:%d is taken (%s); set WORKER_METRICS_PORT (0: none)", host, port, exc)
        else:
            log.info("worker metrics on http://%s:%d/metrics", host, server.port)

    async def run() -> None:
        size_thread_pool(settings.worker_concurrency, settings.llm_concurrency)
        llm = crew_reviewer(settings)
        if llm is not None:
            # CrewAI's import (~3 s) and the LLM clients, once here rather than in the first reviews.
            await llm.warm(settings.worker_concurrency * settings.llm_concurrency)
        jobs = Jobs.from_settings(settings)
        await jobs.connect()
        storage = create_storage(settings.rate_limit_storage_uri)  # the installation limit, shared with replicas
        tasks = service_tasks(settings, jobs, llm, storage=storage, metrics=metrics)
        try:
            worker = build_worker(jobs, tasks, concurrency=settings.worker_concurrency, embedded=False, metrics=metrics)
            await worker.start()  # until SIGINT/SIGTERM; running jobs go back to the queue
        finally:
            await close_tasks(tasks)
            await jobs.close()
            await close_storage(storage)

    try:
        asyncio.run(run())
    finally:
        if server is not None:
            server.stop()
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from bot.local_review import run_review  # noqa: PLC0415 - keeps `serve` start-up free of the engine

    return run_review(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=f"{NAME} {app_version()}")
    parser.add_argument("--version", action="version", version=f"{NAME} {app_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the webhook and REST API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser(
        "worker",
        help="run queued jobs (Redis mode; with the embedded queue, serve already runs them in-process)",
    )
    worker.set_defaults(func=cmd_worker)

    check = commands.add_parser(
        "check-config", help="print the effective settings (secrets masked); exit 2 if any is invalid"
    )
    check.set_defaults(func=cmd_check_config)

    review = commands.add_parser(
        "review",
        help="review a local diff (git diff main | python -m bot review -) or one file (--file Foo.kt)",
        description="Review a unified diff (a file, or - for stdin) or a whole file with the rules. "
        "Exit 1 when a finding at or above --fail-on exists, 2 on bad input.",
    )
    review.add_argument("diff", nargs="?", metavar="DIFF_FILE|-", help="the diff to review (- reads stdin)")
    review.add_argument("--file", dest="whole_file", metavar="PATH", help="review this whole file instead")
    review.add_argument(
        "--format",
        choices=("text", "json", "sarif", "markdown"),
        default="text",
        help="output (default text)",
    )
    review.add_argument(
        "--fail-on",
        choices=("blocker", "major", "minor", "nit", "never"),
        default="never",
        help="exit 1 when a finding at or above this severity exists (default never)",
    )
    review.add_argument(
        "--root", default=".", help="where the diff's files are, to review whole new versions (default .)"
    )
    review.add_argument(
        "--config",
        metavar="YAML",
        help="repo config to apply (default: ROOT/.github/ai-review.yml if present)",
    )
    review.set_defaults(func=cmd_review)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
