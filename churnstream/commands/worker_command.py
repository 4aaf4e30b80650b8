"""``churnstream worker``: run the streaming worker."""

from __future__ import annotations

import threading

import typer


def worker_command(
    web_port: int | None = typer.Option(
        None, "--web-port", help="Port for /metrics and /health (default: CHURN_WORKER_WEB_PORT)."
    ),
) -> None:
    """Consume customer events, keep their features in Redis and score them live.

    Run several to share the partitions (same CHURN_CONSUMER_GROUP). Stop with Ctrl-C or
    SIGTERM: the batch in progress is finished first, and the worker exits within
    CHURN_WORKER_SHUTDOWN_SECONDS even when Kafka or Redis is unreachable; after a crash
    or such an exit, nothing is lost or counted twice.
    """
    from core.kafka_client import PartitionCountMismatch, check_input_partitions, ensure_topics
    from core.settings import get_settings
    from stream.app import create_app
    from stream.shutdown import DeadlineWorker, ShutdownDeadline

    settings = get_settings()
    if web_port is not None:
        settings = settings.model_copy(update={"worker_web_port": web_port})
    ensure_topics(settings)  # before Faust subscribes: the input topics must exist
    try:
        check_input_partitions(settings)
    except PartitionCountMismatch as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    (settings.run_dir / "worker").mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()
    app = create_app(settings, stopping)
    DeadlineWorker(
        app,
        deadline=ShutdownDeadline(settings.worker_shutdown_seconds),
        stopping=stopping,
        loglevel=settings.log_level.lower(),
        override_logging=False,  # keep the CHURN_LOG_FORMAT logging set up by the CLI
        redirect_stdouts=False,
        quiet=True,
    ).execute_from_commandline()
