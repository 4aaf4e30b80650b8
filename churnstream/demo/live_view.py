"""The live view: what the stream has done so far and who is at risk now, drawn with rich."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from churnstream.demo.risk_board import RiskBoard, Snapshot
from churnstream.demo.services import DemoServices
from core.producer import EventProducer
from core.settings import Settings, get_settings

BAND_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}


@dataclass
class Flow:
    """What the stream has done so far, and the latest snapshot of the scores."""

    snapshot: Snapshot
    by_type: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    reports: int = 0  # drift reports written so far
    exited: str | None = None  # a service that exited on its own, and where its log is
    simulated_time: datetime | None = None  # of the event sent last, before its stamping
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None
    phase: str = "live"


def _when(epoch: float | None, fmt: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(fmt) if epoch is not None else "-"


def view(
    settings: Settings,
    board: RiskBoard,
    services: DemoServices,
    producer: EventProducer,
    flow: Flow,
) -> Group:
    snapshot = flow.snapshot
    end = flow.stopped or time.monotonic()
    elapsed = max(end - flow.started, 1e-6)
    stats = producer.stats
    head = Text.assemble(
        (flow.phase, "bold"),
        f"  {elapsed:,.0f} s  sent {stats.sent:,}  delivered {stats.delivered:,}  "
        f"failed {stats.failed:,}  {stats.sent / elapsed:,.0f} events/s  "
        f"customers {len(flow.customers):,}",
    )
    if flow.simulated_time is not None:
        head.append(
            f"\nsimulated clock {flow.simulated_time:%Y-%m-%d %H:%M} UTC "
            "(events are stamped with the present as they are sent)"
        )
    parts: list[Any] = [head, _worker_line(board, snapshot), _risk_table(snapshot)]
    parts.append(_events_table(flow.by_type))
    if flow.exited:
        parts.append(Text(flow.exited, style="bold red"))
    parts.append(_where_to_look(settings, board, services, producer, flow))
    return Group(*parts)


def _worker_line(board: RiskBoard, snapshot: Snapshot) -> Text:
    line = Text()
    worker = board.worker
    code = worker.exit_code() if worker is not None else None
    if worker is None:
        line.append("no worker started (--no-worker)", style="dim")
    elif code is not None:
        line.append(f"the worker exited (code {code}): see {worker.log_path}", style="bold red")
    else:
        line.append("worker ", style="bold")
        line.append(f"pid {worker.pid}")
    if snapshot.champion:
        line.append(f"  model {snapshot.champion}")
    if snapshot.lag is not None and (worker is not None or snapshot.applied_any):
        line.append("  lag ")
        line.append(f"{snapshot.lag:,} events", style="bold" if snapshot.lag else "green")
    line.append(f"  scored {snapshot.scored:,} customers")
    if snapshot.bands:
        line.append(":")
        for band in ("high", "medium", "low"):
            line.append(f" {band} ")
            line.append(f"{snapshot.bands[band]:,}", style=BAND_STYLE[band])
    if snapshot.error:
        line.append(f"\nreading the scores failed: {snapshot.error}", style="yellow")
    return line


def _risk_table(snapshot: Snapshot) -> Table | Text:
    if not snapshot.top:
        return Text("at-risk now: nobody scored yet", style="dim")
    table = Table(
        title=f"at-risk now (top {len(snapshot.top)} of {snapshot.scored:,})",
        title_justify="left",
        title_style="bold",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("customer")
    table.add_column("score", justify="right")
    table.add_column("band")
    table.add_column("model")
    table.add_column("last event (UTC)")
    table.add_column("scored at (UTC)")
    for row in snapshot.top:
        table.add_row(
            row.customer_id,
            f"{row.score:.3f}",
            Text(row.band, style=BAND_STYLE.get(row.band, "")),
            row.model_version,
            _when(row.last_event_time, "%Y-%m-%d %H:%M"),
            _when(row.scored_at, "%H:%M:%S"),
        )
    return table


def _events_table(by_type: Counter[str], per_row: int = 5) -> Table:
    table = Table.grid(padding=(0, 1))
    for _ in range(per_row):
        table.add_column(style="dim")
        table.add_column(justify="right")
    cells: list[str] = []
    for event_type, count in by_type.most_common():
        cells += [event_type, f"{count:,}"]
    for start in range(0, len(cells), 2 * per_row):
        table.add_row(*cells[start : start + 2 * per_row])
    return table


def _where_to_look(
    settings: Settings,
    board: RiskBoard,
    services: DemoServices,
    producer: EventProducer,
    flow: Flow,
) -> Panel:
    topics = producer.topics
    snapshot = flow.snapshot
    customer = snapshot.top[0].customer_id if snapshot.top else "<customer id>"
    lines = []
    if services.api is not None:
        url = services.api.url
        lines += [
            f"dashboard:      {url}/",
            f"API docs:       {url}/docs   (e.g. {url}/customers/{customer}/risk)",
        ]
    if services.monitor is not None:
        where = f"{services.api.url}/reports/drift/latest" if services.api else ""
        lines.append(
            f"drift reports:  {flow.reports} so far   {where}   files: {services.reports_dir}"
        )
    # another shell has the same settings, but the demo's Redis may not be REDIS_URL's
    env = (
        "" if settings.redis_url == get_settings().redis_url else f"REDIS_URL={settings.redis_url} "
    )
    lines += [
        f"kcat -C -b {settings.kafka_bootstrap_servers} -t {topics.activity} -o end -q",
        f"{env}churnstream risk {customer}",
    ]
    if board.worker is not None:
        lines.append(f"worker metrics: {board.worker.metrics_url}   log: {board.worker.log_path}")
    else:
        lines.append(
            f"score them: KAFKA_BOOTSTRAP_SERVERS={settings.kafka_bootstrap_servers} "
            f"REDIS_URL={settings.redis_url} churnstream worker"
        )
    lines.append(f"churnstream infra status   Redis: {settings.redis_url}")
    lines.append("Ctrl-C stops the stream and everything the demo started")
    return Panel("\n".join(lines), title="where to look", expand=False)
