"""``churnstream demo``: the whole system running locally on simulated customers.

Starts the local Kafka + Redis (unless they already run), makes sure the registry has a
champion model (training a starter model on simulated history when it has none), starts a
worker (``churnstream worker``) as a child process, streams simulated customers' events into
Kafka at a live rate and shows what flows and who is at risk now. Ctrl-C (or
``--duration``) stops the stream and everything the demo started; a stack that was already
running is left up. ``--no-worker`` only streams (for users who run their own worker).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import typer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]
from pydantic import SecretStr
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from churnstream.infra import InfraError, LocalStack
from churnstream.infra.processes import port_open
from core.events import Event
from core.kafka_client import client_config, ensure_topics
from core.keys import Keys
from core.model import BandCutoffs
from core.producer import EventProducer
from core.redis_client import connect_redis
from core.registry import ChampionPointer, ModelRegistry, RegistryError
from core.settings import Settings, env_var_name, get_settings
from core.topics import Topics
from offline.simulator import SimulationConfig, simulate

log = logging.getLogger(__name__)

TOP_N = 10
POLL_SECONDS = 1.0  # how often the view reads Redis and Kafka
DRAIN_SECONDS = 15.0  # after --duration: longest wait for the worker to apply the rest
WORKER_READY_SECONDS = 90.0
WORKER_STOP_SECONDS = 20.0  # SIGTERM, then SIGKILL after this long
TRAIN_SEED_OFFSET = 1000  # the starter model trains on other customers than the stream's
BAND_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}


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
    worker: bool = typer.Option(
        True,
        "--worker/--no-worker",
        help="Run a worker that scores the stream (default), or only stream the events "
        "(for your own `churnstream worker`).",
    ),
    train_customers: int = typer.Option(
        600, min=50, help="Simulated customers of the starter model (when there is no champion)."
    ),
    train_days: int = typer.Option(
        60, min=50, help="Simulated days of the starter model (when there is no champion)."
    ),
) -> None:
    """Run churnstream locally: Kafka + Redis, a worker scoring live, simulated customers."""
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
        update={
            "kafka_bootstrap_servers": stack.bootstrap_servers,
            "redis_url": stack.redis_url,
            "redis_password": None,
            "run_dir": stack.run_dir,
        }
    )
    child: WorkerChild | None = None
    board: RiskBoard | None = None
    failed = False
    try:
        ensure_topics(local)
        if worker:
            _ensure_champion(console, local, train_customers, train_days, seed + TRAIN_SEED_OFFSET)
            child = WorkerChild(local, stack.run_dir / "worker.log")
            _start_worker(console, child)
        board = RiskBoard(local, child)
        _stream(console, local, board, customers, days, rate or None, seed, duration)
        if child is not None:
            child.stop()
        _print_scored(console, board)
    except KeyboardInterrupt:  # e.g. while training, or a second Ctrl-C while flushing
        console.print("stopping…")
    except _DemoError as exc:
        console.print(Text(str(exc), style="red"))
        failed = True
    finally:
        # Another Ctrl-C must not cut the clean-up short (each step has a time limit).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if board is not None:
                board.close()
            if child is not None and child.started:
                child.stop()
                console.print(f"worker stopped; its log: {child.log_path}", highlight=False)
            if already_running:
                console.print("the local stack was already running before the demo: left up")
            else:
                stack.down()
                console.print("local Kafka and Redis stopped")
        finally:
            signal.signal(signal.SIGINT, previous)
    if failed:
        raise typer.Exit(1)


class _DemoError(RuntimeError):
    """The demo cannot go on (the message says why)."""


# --- the champion model ----------------------------------------------------------------------


def _ensure_champion(
    console: Console, settings: Settings, customers: int, days: int, seed: int
) -> None:
    """Keep the registry's champion, or train a starter model on simulated history and
    promote it when there is none (or its artifact cannot be loaded)."""
    registry = ModelRegistry(settings, connect_redis(settings))
    try:
        model = registry.load_champion()
    except RegistryError as exc:
        console.print(f"[yellow]the champion model cannot be loaded:[/] {exc}")
        model = None
    if model is not None:
        console.print(f"champion model {model.version}", highlight=False)
        return
    from offline.train import bootstrap_from_simulation  # numpy and friends: only when needed

    console.print(
        f"no champion model yet: training a starter model on simulated history "
        f"({customers:,} customers, {days} days, seed {seed})…"
    )
    started = time.monotonic()
    with console.status("training a starter model on simulated history…") as status:
        model, metrics = bootstrap_from_simulation(
            customers=customers, days=days, seed=seed, progress=status.update
        )
        status.update("registering and promoting")
        manifest = registry.register(model, metrics, model.metadata.get("training", {}))
        registry.promote(manifest.version)
    console.print(
        f"starter model {manifest.version} promoted to champion: validation ROC AUC "
        f"{metrics['roc_auc']:.3f}, PR AUC {metrics['pr_auc']:.3f} "
        f"(trained in {time.monotonic() - started:.1f} s)",
        highlight=False,
    )


# --- the worker child process ----------------------------------------------------------------


def worker_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every setting of ``settings`` in its variable."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        variable = env_var_name(name)
        value = getattr(settings, name)
        if value is None:
            env.pop(variable, None)
        elif isinstance(value, SecretStr):
            env[variable] = value.get_secret_value()
        else:
            env[variable] = str(value)
    return env


class WorkerChild:
    """``churnstream worker`` as a child process, its output in ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.port = settings.worker_web_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def started(self) -> bool:
        return self.process is not None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        # The comment in the code names the run dir, so `ps` (and tests) can tell which
        # demo a worker belongs to. A new session: the terminal's Ctrl-C reaches only the
        # demo, which then stops the worker in order.
        code = (
            "from churnstream.cli import main; main()"
            f"  # churnstream demo worker, run dir {self.settings.run_dir}"
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out, open(os.devnull, "rb") as devnull:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code, "worker", "--web-port", str(self.port)],
                stdin=devnull,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=worker_env(self.settings),
                start_new_session=True,
                close_fds=True,
            )

    def exit_code(self) -> int | None:
        """None while running (or never started), else the exit code."""
        return self.process.poll() if self.process is not None else None

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/health"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise _DemoError(f"the worker exited (code {code}):\n{self.log_tail()}")
            if self.healthy():
                return
            time.sleep(0.3)
        raise _DemoError(f"the worker did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = WORKER_STOP_SECONDS) -> None:
        """SIGTERM (the worker finishes its batch), then SIGKILL after ``timeout``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _start_worker(console: Console, child: WorkerChild) -> None:
    if port_open("127.0.0.1", child.port):
        raise _DemoError(
            f"port {child.port} is already in use (another worker?): set "
            f"{env_var_name('worker_web_port')} to a free port, or use --no-worker"
        )
    child.start()
    with console.status(f"starting the worker (log: {child.log_path})…"):
        child.wait_ready(WORKER_READY_SECONDS)
    console.print(
        f"worker running (pid {child.pid}, metrics {child.metrics_url}, log {child.log_path})",
        highlight=False,
    )


# --- what the worker wrote: the at-risk board --------------------------------------------------

# The top customers with their score fields, in the same round trip as the counts. The
# demo's Redis is the local single server, where a script may build key names.
_TOP_SCRIPT = """
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
local rows = {}
for i = 1, #ids, 2 do
  local key = ARGV[1] .. ids[i] .. ARGV[2]
  local f = redis.call('HMGET', key, 'band', 'model_version', 'scored_at', 'last_event_time')
  rows[#rows + 1] = {ids[i], ids[i + 1], f[1], f[2], f[3], f[4]}
end
return rows
"""


@dataclass(frozen=True)
class AtRisk:
    customer_id: str
    score: float
    band: str
    model_version: str
    scored_at: float | None
    last_event_time: int | None


@dataclass
class Snapshot:
    """What the worker has written, read at ``at`` (monotonic)."""

    at: float = 0.0
    scored: int = 0
    bands: dict[str, int] | None = None  # by the champion's cut-offs; None without one
    top: list[AtRisk] = field(default_factory=list)
    champion: str | None = None
    lag: int | None = None  # input events not yet applied; None when unknown
    applied_any: bool = False
    error: str | None = None


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


class RiskBoard:
    """Reads the at-risk view: one Redis round trip plus one Kafka offsets request."""

    def __init__(self, settings: Settings, worker: WorkerChild | None) -> None:
        self.settings = settings
        self.worker = worker
        self.redis = connect_redis(settings)
        self.keys = Keys(settings.redis_key_prefix)
        self.registry = ModelRegistry(settings, self.redis)
        self.admin: AdminClient | None = AdminClient(client_config(settings))
        self.partitions = self._input_partitions()
        self.key_head, self.key_tail = self.keys.customer("\0").split("\0")
        self.script = self.redis.register_script(_TOP_SCRIPT)
        self.cutoffs: tuple[str, BandCutoffs] | None = None  # (champion version, its bands)
        self.last = Snapshot()

    def close(self) -> None:
        """Let go of the Kafka and Redis clients (before the stack stops: no reconnect noise)."""
        self.admin = None
        self.redis.close()

    def _input_partitions(self) -> list[tuple[str, int]]:
        topics = Topics.from_settings(self.settings)
        assert self.admin is not None
        metadata = self.admin.list_topics(timeout=10).topics
        return [
            (topic, partition)
            for topic in (topics.activity, topics.transactions)
            if topic in metadata
            for partition in sorted(metadata[topic].partitions)
        ]

    def poll(self) -> Snapshot:
        try:
            self.last = self._read()
        except Exception as exc:  # the view keeps the last snapshot, and says why
            self.last.error = f"{type(exc).__name__}: {exc}"
        return self.last

    def _read(self) -> Snapshot:
        ends = self._end_offsets()
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.champion)
        pipe.zcard(self.keys.risk)
        self.script(keys=[self.keys.risk], args=[self.key_head, self.key_tail, TOP_N], client=pipe)
        bands = self.cutoffs[1] if self.cutoffs else None
        if bands is not None:
            pipe.zcount(self.keys.risk, bands.high, "+inf")
            pipe.zcount(self.keys.risk, bands.medium, f"({bands.high}")
        if self.partitions:
            pipe.mget([self.keys.fence(t, p) for t, p in self.partitions])
        results = pipe.execute()
        pointer, scored, rows = results[0], int(results[1]), results[2]
        snapshot = Snapshot(at=time.monotonic(), scored=scored)
        if pointer is not None:
            snapshot.champion = ChampionPointer.from_json(pointer).version
        if bands is not None:
            high, medium = int(results[3]), int(results[4])
            snapshot.bands = {"high": high, "medium": medium, "low": scored - high - medium}
        if self.partitions:
            fences = [int(v) if v is not None else -1 for v in results[-1]]
            snapshot.applied_any = any(f >= 0 for f in fences)
            if ends is not None:
                snapshot.lag = sum(
                    max(ends[tp] - 1 - fence, 0)
                    for tp, fence in zip(self.partitions, fences, strict=True)
                )
        snapshot.top = [
            AtRisk(
                customer_id=_text(row[0]),
                score=float(row[1]),
                band=_text(row[2]) or "?",
                model_version=_text(row[3]),
                scored_at=float(row[4]) if row[4] is not None else None,
                last_event_time=int(row[5]) if row[5] is not None else None,
            )
            for row in cast(list[list[Any]], rows)
        ]
        self._follow_champion(snapshot.champion)
        return snapshot

    def _end_offsets(self) -> dict[tuple[str, int], int] | None:
        """The next offset to be written per input partition; None when Kafka is slow."""
        if not self.partitions or self.admin is None:
            return None
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        wanted = {TopicPartition(t, p): latest for t, p in self.partitions}
        try:
            futures = self.admin.list_offsets(wanted, request_timeout=2)
            return {
                (tp.topic, tp.partition): future.result(timeout=3).offset
                for tp, future in futures.items()
            }
        except Exception:
            return None

    def _follow_champion(self, version: str | None) -> None:
        """Band cut-offs of the current champion (reloaded when it changes)."""
        if version is None or (self.cutoffs is not None and self.cutoffs[0] == version):
            return
        try:
            model = self.registry.load_champion()
        except RegistryError:
            return
        if model is not None:
            self.cutoffs = (model.version, model.bands)


def _print_scored(console: Console, board: RiskBoard) -> None:
    snapshot = board.poll()
    if snapshot.error is not None:
        console.print(f"[yellow]could not read the scores:[/] {snapshot.error}")
        return
    line = f"scored {snapshot.scored:,} customers"
    if snapshot.bands is not None:
        b = snapshot.bands
        line += f" (high {b['high']:,}, medium {b['medium']:,}, low {b['low']:,})"
    console.print(line, highlight=False)


# --- streaming and the live view -------------------------------------------------------------


@dataclass
class _Flow:
    """What the stream has done so far, and the latest snapshot of the scores."""

    snapshot: Snapshot
    by_type: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)
    last_event: Event | None = None
    started: float = field(default_factory=time.monotonic)
    stopped: float | None = None
    phase: str = "streaming"


def _stream(
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
    flow = _Flow(snapshot=board.poll())
    next_poll = time.monotonic() + POLL_SECONDS
    next_draw = 0.0
    interrupted = False
    with (
        EventProducer(settings, create_topics=False) as producer,
        Live(console=console, refresh_per_second=4) as live,
    ):

        def draw() -> None:
            live.update(_view(settings, board, producer, flow))

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
    stats = producer.stats
    console.print(
        f"streamed {stats.sent:,} events of {len(flow.customers):,} customers: "
        f"{stats.delivered:,} delivered, {stats.failed:,} failed"
    )


def _drain(board: RiskBoard, flow: _Flow, draw: Callable[[], None]) -> None:
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


def _when(epoch: float | None, fmt: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime(fmt) if epoch is not None else "-"


def _view(settings: Settings, board: RiskBoard, producer: EventProducer, flow: _Flow) -> Group:
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
    if flow.last_event is not None:
        head.append(f"\nsimulated clock {flow.last_event.event_time:%Y-%m-%d %H:%M} UTC")
    parts: list[Any] = [head, _worker_line(board, snapshot), _risk_table(snapshot)]
    parts.append(_events_table(flow.by_type))
    parts.append(_where_to_look(settings, board, producer, snapshot))
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
    settings: Settings, board: RiskBoard, producer: EventProducer, snapshot: Snapshot
) -> Panel:
    topics = producer.topics
    customer = snapshot.top[0].customer_id if snapshot.top else "<customer id>"
    # another shell has the same settings, but the demo's Redis may not be REDIS_URL's
    env = (
        "" if settings.redis_url == get_settings().redis_url else f"REDIS_URL={settings.redis_url} "
    )
    lines = [
        f"kcat -C -b {settings.kafka_bootstrap_servers} -t {topics.activity} -o end -q",
        f"{env}churnstream risk {customer}",
    ]
    if board.worker is not None:
        lines.append(f"worker metrics: {board.worker.metrics_url}   log: {board.worker.log_path}")
    lines.append(f"churnstream infra status   Redis: {settings.redis_url}")
    return Panel("\n".join(lines), title="where to look", expand=False)
