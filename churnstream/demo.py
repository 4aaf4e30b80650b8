"""``churnstream demo``: the whole system running locally on simulated customers.

Starts the local Kafka + Redis (unless they already run), streams simulated customers'
events into Kafka at a live rate and shows what flows. Ctrl-C (or ``--duration``) stops
the stream and everything the demo started; a stack that was already running is left up.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from churnstream.infra import InfraError, LocalStack
from core.events import Event
from core.kafka_client import ensure_topics
from core.producer import EventProducer
from core.settings import Settings, get_settings
from offline.simulator import SimulationConfig, simulate

log = logging.getLogger(__name__)


def paced(events: Iterable[Event], rate: float | None) -> Iterator[Event]:
    """Yield ``events`` no faster than ``rate`` per second (all at once when ``None``)."""
    if not rate:
        yield from events
        return
    started = time.monotonic()
    for count, event in enumerate(events):
        ahead = started + count / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        yield event


def demo(
    duration: float | None = typer.Option(
        None, "--duration", min=1, help="Stop after this many seconds (default: until Ctrl-C)."
    ),
    customers: int = typer.Option(500, min=1, help="Simulated customers."),
    days: int = typer.Option(
        30, min=1, help="Days of history to simulate; the stream ends at the present."
    ),
    rate: float = typer.Option(300.0, min=0, help="Events per second (0: as fast as possible)."),
    seed: int = typer.Option(42, help="Simulation seed."),
) -> None:
    """Run churnstream locally: Kafka + Redis, and simulated customers streaming live."""
    console = Console()
    settings = get_settings()
    stack = LocalStack.from_settings(settings)
    already_running = stack.status().all_running
    console.print("[bold]churnstream demo[/] — starting local Kafka and Redis…")
    try:
        stack.up()
    except InfraError as exc:
        console.print(f"[red]could not start the local stack:[/] {exc}")
        raise typer.Exit(1) from None
    local = settings.model_copy(
        update={"kafka_bootstrap_servers": stack.bootstrap_servers, "redis_url": stack.redis_url}
    )
    try:
        ensure_topics(local)
        _stream(console, local, customers, days, rate or None, seed, duration)
    except KeyboardInterrupt:  # a second Ctrl-C, e.g. while flushing
        console.print("stopping…")
    finally:
        if already_running:
            console.print("the local stack was already running before the demo: left up")
        else:
            stack.down()
            console.print("local Kafka and Redis stopped")


def _stream(
    console: Console,
    settings: Settings,
    customers: int,
    days: int,
    rate: float | None,
    seed: int,
    duration: float | None,
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    config = SimulationConfig(
        customers=customers, days=days, start=today - timedelta(days=days - 1), seed=seed
    )
    by_type: Counter[str] = Counter()
    seen: set[str] = set()
    started = time.monotonic()
    last_event: Event | None = None
    with (
        EventProducer(settings, create_topics=False) as producer,
        Live(console=console, refresh_per_second=4) as live,
    ):
        try:
            for event in paced(simulate(config), rate):
                producer.send(event)
                by_type[event.type] += 1
                seen.add(event.customer_id)
                last_event = event
                if sum(by_type.values()) % 50 == 0:
                    live.update(_view(settings, producer, by_type, len(seen), started, last_event))
                if duration is not None and time.monotonic() - started >= duration:
                    break
        except KeyboardInterrupt:
            console.print("stopping…")
        producer.flush()
        live.update(_view(settings, producer, by_type, len(seen), started, last_event))
    stats = producer.stats
    console.print(
        f"streamed {stats.sent:,} events of {len(seen):,} customers: "
        f"{stats.delivered:,} delivered, {stats.failed:,} failed"
    )


def _view(
    settings: Settings,
    producer: EventProducer,
    by_type: Counter[str],
    customers_seen: int,
    started: float,
    last_event: Event | None,
) -> Group:
    elapsed = max(time.monotonic() - started, 1e-6)
    stats = producer.stats
    table = Table(title="events streamed", show_edge=False)
    table.add_column("type")
    table.add_column("count", justify="right")
    for event_type, count in by_type.most_common():
        table.add_row(event_type, f"{count:,}")
    head = (
        f"sent {stats.sent:,}  delivered {stats.delivered:,}  failed {stats.failed:,}  "
        f"{stats.sent / elapsed:,.0f} events/s  customers {customers_seen:,}"
    )
    if last_event is not None:
        head += f"\nsimulated clock {last_event.event_time:%Y-%m-%d %H:%M} UTC"
    topics = producer.topics
    look = (
        f"kcat -C -b {settings.kafka_bootstrap_servers} -t {topics.activity} -o end -q\n"
        f"churnstream infra status\n"
        f"Redis: {settings.redis_url}"
    )
    return Group(head, table, Panel(look, title="where to look", expand=False))
