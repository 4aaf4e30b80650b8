"""``churnstream infra``: start, stop and inspect the local Kafka broker and Redis server
(and, with ``up --prometheus``, a Prometheus scraping the worker, the API and the monitor).

Settings come from :func:`core.settings.get_settings` (``CHURN_RUN_DIR``, ``CHURN_KAFKA_PORT``,
...); the options of each command override them. Exit codes: 0 success, 1 failure,
3 (``status`` only) when a service is not running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from churnstream.infra.kafka import ensure_kafka_jars
from churnstream.infra.stack import InfraError, LocalStack, StackStatus

infra_app = typer.Typer(
    help=(
        "Run Kafka and Redis (and, with `up --prometheus`, Prometheus) locally as plain "
        "processes (no Docker): `up` starts them, `status` shows them, `down` stops them. "
        "Data, logs and pid files live in the run directory (CHURN_RUN_DIR, default .run)."
    ),
    no_args_is_help=True,
)

_out = Console()
_err = Console(stderr=True)

RunDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--run-dir",
        help="Directory for data, logs and pid files (default: CHURN_RUN_DIR, else .run).",
        show_default=False,
    ),
]
KafkaPortOpt = Annotated[
    int | None,
    typer.Option(
        "--kafka-port",
        min=1,
        max=65535,
        help="Kafka client port (default: CHURN_KAFKA_PORT, else 19092).",
        show_default=False,
    ),
]
ControllerPortOpt = Annotated[
    int | None,
    typer.Option(
        "--kafka-controller-port",
        min=1,
        max=65535,
        help=(
            "Kafka controller port (default: CHURN_KAFKA_CONTROLLER_PORT, else the Kafka "
            "port + 1 when --kafka-port is given, else 19093)."
        ),
        show_default=False,
    ),
]
RedisPortOpt = Annotated[
    int | None,
    typer.Option(
        "--redis-port",
        min=1,
        max=65535,
        help="Redis port (default: CHURN_REDIS_PORT, else 16379).",
        show_default=False,
    ),
]

PrometheusPortOpt = Annotated[
    int | None,
    typer.Option(
        "--prometheus-port",
        min=1,
        max=65535,
        help="Prometheus port (default: the running one's, else CHURN_PROMETHEUS_PORT, "
        "else 19090).",
        show_default=False,
    ),
]


def _stack(
    run_dir: Path | None,
    kafka_port: int | None,
    controller_port: int | None,
    redis_port: int | None,
    *,
    use_recorded: bool,
    with_prometheus: bool = False,
    prometheus_port: int | None = None,
    with_redis_cluster: bool = False,
) -> LocalStack:
    """The stack from settings, overridden by options (and, for status/down, by the ports
    recorded in the run dir when no port option is given). A Prometheus recorded in the run
    dir keeps its port unless ``prometheus_port`` is given."""
    from core.settings import get_settings  # here: `churnstream --help` does without it
    from serving.config import get_api_settings

    settings = get_settings()
    if run_dir is not None:
        settings = settings.model_copy(update={"run_dir": run_dir})
    stack = LocalStack.from_settings(
        settings,
        get_api_settings().port,
        with_prometheus=with_prometheus,
        with_redis_cluster=with_redis_cluster,
    )
    recorded_all = LocalStack.recorded_ports(stack.run_dir) or {}
    recorded_prometheus = recorded_all.get("prometheus_port")
    if "redis_cluster_port" in recorded_all:
        stack.redis_cluster_port = recorded_all["redis_cluster_port"]
    if prometheus_port is not None:
        stack.prometheus_port = prometheus_port
    elif recorded_prometheus is not None:
        stack.prometheus_port = recorded_prometheus
    if use_recorded and recorded_prometheus is not None:
        stack.with_prometheus = True
    recorded = LocalStack.recorded_ports(stack.run_dir) if use_recorded else None
    if recorded and kafka_port is None and controller_port is None and redis_port is None:
        stack.kafka_port = recorded.get("kafka_port", stack.kafka_port)
        stack.kafka_controller_port = recorded.get(
            "kafka_controller_port", stack.kafka_controller_port
        )
        stack.redis_port = recorded.get("redis_port", stack.redis_port)
        return stack
    if kafka_port is not None:
        stack.kafka_port = kafka_port
        if controller_port is None and "kafka_controller_port" not in settings.model_fields_set:
            controller_port = kafka_port + 1
    if controller_port is not None:
        stack.kafka_controller_port = controller_port
    if redis_port is not None:
        stack.redis_port = redis_port
    return stack


def _table(stack: LocalStack, status: StackStatus) -> Table:
    table = Table(title=f"churnstream infra — {stack.run_dir}", title_justify="left")
    for column in ("service", "state", "pid", "address", "detail"):
        table.add_column(column)
    for service in status.services:
        state = "[green]running[/]" if service.running else "[red]not running[/]"
        pid = str(service.pid) if service.pid else "-"
        table.add_row(service.name, state, pid, service.address, service.detail)
    return table


def _fail(what: str, exc: Exception) -> None:
    _err.print(f"[red]{what}:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)


def _env_lines(stack: LocalStack, status: StackStatus) -> str:
    cluster = any(s.name.startswith("redis-cluster-") and s.running for s in status.services)
    redis_url = stack.redis_cluster_url if cluster else stack.redis_url
    lines = [f"KAFKA_BOOTSTRAP_SERVERS={stack.bootstrap_servers}", f"REDIS_URL={redis_url}"]
    if any(service.name == "prometheus" and service.running for service in status.services):
        lines.append(f"PROMETHEUS_URL={stack.prometheus_url}")
    return "\n".join(lines)


@infra_app.command("up")
def up_command(
    run_dir: RunDirOpt = None,
    kafka_port: KafkaPortOpt = None,
    kafka_controller_port: ControllerPortOpt = None,
    redis_port: RedisPortOpt = None,
    prometheus: Annotated[
        bool,
        typer.Option(
            "--prometheus",
            help="Also start Prometheus (Debian's `prometheus` package), scraping the "
            "worker, the API and the monitor at CHURN_WORKER_WEB_PORT, CHURN_API_PORT and "
            "CHURN_MONITOR_METRICS_PORT.",
        ),
    ] = False,
    prometheus_port: PrometheusPortOpt = None,
    redis_cluster: Annotated[
        bool,
        typer.Option(
            "--redis-cluster",
            help="Also start a local Redis Cluster of three masters (Debian's "
            "`redis-server`, ports CHURN_REDIS_CLUSTER_PORT to +2, bus ports +10000); "
            "`status --env` then points REDIS_URL at it.",
        ),
    ] = False,
    scrape_interval: Annotated[
        float,
        typer.Option(
            "--scrape-interval", min=0.1, help="With --prometheus: seconds between scrapes."
        ),
    ] = 5.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the services to answer.")
    ] = 120.0,
) -> None:
    """Start Redis and Kafka (what is not already running) and create the topics.

    The first run fetches the Kafka broker's jars from Maven Central with `mvn` (cached in
    CHURN_KAFKA_LIBS_DIR). Running `up` again is safe: nothing is started twice. With
    --prometheus, a running Prometheus gets its scrape targets from the current settings.
    """
    from confluent_kafka import KafkaException

    from core.kafka_client import ensure_topics
    from core.settings import get_settings

    stack = _stack(
        run_dir,
        kafka_port,
        kafka_controller_port,
        redis_port,
        use_recorded=False,
        with_prometheus=prometheus,
        prometheus_port=prometheus_port,
        with_redis_cluster=redis_cluster,
    )
    stack.scrape_interval_seconds = scrape_interval
    try:
        status = stack.up(timeout=timeout)
        settings = get_settings().model_copy(
            update={"kafka_bootstrap_servers": stack.bootstrap_servers}
        )
        created = ensure_topics(settings)
    except InfraError as exc:
        _fail("infra up failed", exc)
        raise typer.Exit(1) from exc
    except KafkaException as exc:
        _fail("creating topics failed", exc)
        raise typer.Exit(1) from exc
    _out.print(_table(stack, status))
    _out.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    logs = [f"{stack.run_dir}/{name}/{name}.log" for name in ("kafka", "redis")]
    if any(service.name == "prometheus" for service in status.services):
        logs.append(str(stack.prometheus.log_file))
        _out.print(f"prometheus: {stack.prometheus_url} (queries: {stack.prometheus_url}/graph)")
    _out.print(f"logs: {', '.join(logs)}")
    _out.print('point clients here with:  eval "$(churnstream infra status --env)"')


@infra_app.command("down")
def down_command(
    run_dir: RunDirOpt = None,
    kafka_port: KafkaPortOpt = None,
    kafka_controller_port: ControllerPortOpt = None,
    redis_port: RedisPortOpt = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a graceful stop before SIGKILL.")
    ] = 30.0,
) -> None:
    """Stop the Redis and Kafka (and Prometheus) processes that `up` started in this run
    directory.

    Data is kept: a later `up` continues where this left off. Stopping nothing is fine.
    Processes are found by their pid files, so port options are not needed here.
    """
    stack = _stack(run_dir, kafka_port, kafka_controller_port, redis_port, use_recorded=True)
    try:
        status = stack.down(timeout=timeout)
    except InfraError as exc:
        _fail("infra down failed", exc)
        raise typer.Exit(1) from exc
    _out.print(_table(stack, status))


@infra_app.command("status")
def status_command(
    run_dir: RunDirOpt = None,
    kafka_port: KafkaPortOpt = None,
    kafka_controller_port: ControllerPortOpt = None,
    redis_port: RedisPortOpt = None,
    env: Annotated[
        bool,
        typer.Option(
            "--env",
            help=(
                "Print only KAFKA_BOOTSTRAP_SERVERS=... and REDIS_URL=... lines (and "
                "PROMETHEUS_URL=... when Prometheus runs; REDIS_URL names the Redis Cluster "
                "when one runs), for "
                'eval "$(churnstream infra status --env)".'
            ),
        ),
    ] = False,
) -> None:
    """Show whether Redis and Kafka (and Prometheus, once started) are running and
    answering. Exit code 3 when not.

    Without port options, the ports `up` recorded in the run directory are used.
    """
    stack = _stack(run_dir, kafka_port, kafka_controller_port, redis_port, use_recorded=True)
    current = stack.status()
    if env:
        if current.all_running:
            typer.echo(_env_lines(stack, current))
        else:
            _err.print("the local stack is not running: start it with `churnstream infra up`")
    else:
        _out.print(_table(stack, current))
    if not current.all_running:
        raise typer.Exit(3)


@infra_app.command("fetch")
def fetch_command() -> None:
    """Download the Kafka broker's jars from Maven Central with `mvn` (once; cached).

    `up` does this by itself when needed; run it ahead to prepare an offline machine.
    """
    from core.settings import get_settings

    libs_dir = get_settings().kafka_libs_dir
    try:
        path = ensure_kafka_jars(libs_dir)
    except InfraError as exc:
        _fail("fetching the Kafka jars failed", exc)
        raise typer.Exit(1) from exc
    jars = len(list(path.glob("*.jar")))
    _out.print(f"Kafka broker jars: {jars} in {path}")
