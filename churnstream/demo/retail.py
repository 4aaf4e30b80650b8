"""``churnstream demo --data online-retail``: a fresh system backfilled from real data, served.

Runs :func:`churnstream.demo.backfill.backfill_online_retail` (import, train, worker,
replay, caught up), then starts the API with its dashboard, prints the customers most at
risk with their reasons and how to point other commands at this system, and keeps both
running until Ctrl-C (or ``--duration``).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from churnstream.demo.backfill import backfill_online_retail, environment_lines, retail_settings
from churnstream.demo.errors import DemoError
from churnstream.demo.services import ApiChild
from churnstream.infra.processes import port_open
from core.settings import Settings


def serve_online_retail(
    console: Console, settings: Settings, data_file: Path, api_port: int, duration: float | None
) -> None:
    """Backfill, serve, wait; stop the worker and the API on the way out."""
    if port_open("127.0.0.1", api_port):
        raise DemoError(f"port {api_port} is already in use: pass another with --api-port")
    retail = retail_settings(settings)
    done = backfill_online_retail(console, retail, data_file)
    assert done.worker is not None and done.as_of is not None
    served = retail.model_copy(update={"as_of": done.as_of})
    api = ApiChild(served, api_port, Path(retail.run_dir) / "online-retail" / "api.log")
    try:
        seconds = ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in done.seconds.items())
        console.print(f"backfilled {done.events_applied:,} events ({seconds})", highlight=False)
        with console.status("starting the API…"):
            api.start()
        show_top(console, api.url)
        console.print(
            f"\n[bold]dashboard:[/] {api.url}/   [bold]API docs:[/] {api.url}/docs\n"
            "point other commands at this system (e.g. `churnstream risk 12346`, "
            "`churnstream models list`, `churnstream verify`):",
            highlight=False,
        )
        for line in environment_lines(served):
            console.print(f"  {line}", highlight=False, soft_wrap=True)
        console.print("Ctrl-C stops the worker, the API and the local stack.")
        deadline = None if duration is None else time.monotonic() + duration
        while deadline is None or time.monotonic() < deadline:
            if done.worker.exit_code() is not None:
                raise DemoError(f"the worker exited:\n{done.worker.log_tail()}")
            time.sleep(0.5)
    finally:
        api.stop()
        done.worker.stop()


def show_top(console: Console, url: str, limit: int = 10) -> None:
    """The customers most at risk, from the API, with each one's top reason."""
    with urllib.request.urlopen(f"{url}/customers/at-risk?limit={limit}", timeout=10) as response:
        page = json.load(response)
    table = Table(title=f"most at risk of {page['total']:,} customers", title_justify="left")
    for column in ("customer", "score", "band", "top reason"):
        table.add_column(column)
    for item in page["items"]:
        customer = item["customer_id"]
        with urllib.request.urlopen(f"{url}/customers/{customer}/risk", timeout=10) as response:
            risk = json.load(response)
        reason = risk["explanations"][0] if risk["explanations"] else None
        table.add_row(
            customer,
            f"{risk['score']:.3f}",
            risk["band"],
            f"{reason['feature']} = {reason['value']:g}" if reason else "",
        )
    console.print(table)
