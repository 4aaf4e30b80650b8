"""Streaming the simulated customers' live events into Kafka at a rate, under the live view."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from rich.console import Console
from rich.live import Live

from churnstream.demo.history import stamped_at_present
from churnstream.demo.live_view import Flow, view
from churnstream.demo.risk_board import RiskBoard
from churnstream.demo.services import DemoServices
from core.events import Event
from core.producer import EventProducer
from core.settings import Settings

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
    services: DemoServices,
    events: Iterable[Event],
    rate: float | None,
    duration: float | None,
) -> None:
    """Send ``events`` (simulated, in simulated time order) at ``rate`` per second, each
    stamped with the present, until they run out, ``duration`` seconds pass or Ctrl-C;
    then let the worker catch up (not after Ctrl-C)."""
    flow = Flow(snapshot=board.poll(), reports=services.drift_reports())
    next_poll = time.monotonic() + POLL_SECONDS
    next_draw = 0.0
    interrupted = False
    simulated: list[datetime] = []  # the simulated time of the event being sent

    def simulated_times() -> Iterator[Event]:
        for event in events:
            simulated[:] = [event.event_time]
            yield event

    with (
        EventProducer(settings, create_topics=False) as producer,
        Live(console=console, refresh_per_second=4) as live,
    ):

        def draw() -> None:
            live.update(view(settings, board, services, producer, flow))

        def poll() -> None:
            flow.snapshot, flow.reports = board.poll(), services.drift_reports()
            flow.exited = services.exited()

        def over() -> bool:
            return duration is not None and time.monotonic() - flow.started >= duration

        try:
            for event in stamped_at_present(paced(simulated_times(), rate)):
                producer.send(event)
                flow.by_type[event.type] += 1
                flow.customers.add(event.customer_id)
                flow.simulated_time = simulated[0] if simulated else None
                now = time.monotonic()
                if now >= next_poll:
                    poll()
                    next_poll = now + POLL_SECONDS
                if now >= next_draw:
                    draw()
                    next_draw = now + 0.25
                if over():
                    break
            else:
                flow.phase = "the simulation has no more events (Ctrl-C stops the demo)"
                while not over():
                    poll()
                    draw()
                    time.sleep(POLL_SECONDS)
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
        poll()
        draw()
    if not console.is_terminal:  # Live ends its last frame with a newline on terminals only
        console.line()
    stats = producer.stats
    console.print(
        f"streamed {stats.sent:,} live events of {len(flow.customers):,} customers: "
        f"{stats.delivered:,} delivered, {stats.failed:,} failed",
        highlight=False,
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
