"""Streaming simulated customers' events into Kafka at a live rate, under the live view."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta

from rich.console import Console
from rich.live import Live

from churnstream.demo.live_view import Flow, view
from churnstream.demo.risk_board import RiskBoard
from core.events import Event
from core.producer import EventProducer
from core.settings import Settings
from offline.simulator import SimulationConfig, simulate

POLL_SECONDS = 1.0  # how often the view reads Redis and Kafka
DRAIN_SECONDS = 15.0  # after --duration: longest wait for the worker to apply the rest


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


def stream(
    console: Console,
    settings: Settings,
    board: RiskBoard,
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
    flow = Flow(snapshot=board.poll())
    next_poll = time.monotonic() + POLL_SECONDS
    next_draw = 0.0
    interrupted = False
    with (
        EventProducer(settings, create_topics=False) as producer,
        Live(console=console, refresh_per_second=4) as live,
    ):

        def draw() -> None:
            live.update(view(settings, board, producer, flow))

        try:
            for event in paced(simulate(config), rate):
                producer.send(event)
                flow.by_type[event.type] += 1
                flow.customers.add(event.customer_id)
                flow.last_event = event
                now = time.monotonic()
                if now >= next_poll:
                    flow.snapshot, next_poll = board.poll(), now + POLL_SECONDS
                if now >= next_draw:
                    draw()
                    next_draw = now + 0.25
                if duration is not None and now - flow.started >= duration:
                    break
        except KeyboardInterrupt:
            console.print("stopping…")
            interrupted = True
        flow.stopped = time.monotonic()
        flow.phase = "flushing"
        draw()
        producer.flush()
        if board.worker is not None and not interrupted:
            flow.phase = "stream stopped: the worker is catching up"
            try:
                _drain(board, flow, draw)
            except KeyboardInterrupt:
                console.print("stopping…")
        flow.phase = "stopped"
        flow.snapshot = board.poll()
        draw()
    if not console.is_terminal:  # Live ends its last frame with a newline on terminals only
        console.line()
    stats = producer.stats
    console.print(
        f"streamed {stats.sent:,} events of {len(flow.customers):,} customers: "
        f"{stats.delivered:,} delivered, {stats.failed:,} failed"
    )


def _drain(board: RiskBoard, flow: Flow, draw: Callable[[], None]) -> None:
    """Poll until the worker has applied every streamed event (or DRAIN_SECONDS pass)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while True:
        flow.snapshot = board.poll()
        draw()
        worker = board.worker
        if flow.snapshot.lag == 0 or worker is None or worker.exit_code() is not None:
            return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.5)
