"""The closing summaries of ``churnstream replay`` (text on stderr, or JSON on stdout)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from offline.replay.checkpoint import Checkpoint
from offline.replay.engine import ArchiveSink, EventTally, InvalidLog, KafkaSink, ReplayStats
from offline.replay.ordering import Plan
from offline.replay.validate import DryRunReport


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _tally_fields(tally: EventTally) -> dict[str, Any]:
    return {
        "events_by_type": dict(tally.by_type.most_common()),
        "first_event_time": _iso(tally.first),
        "last_event_time": _iso(tally.last),
    }


def _span(first: datetime | None, last: datetime | None) -> str:
    if first is None or last is None:
        return "-"
    return f"{first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} UTC"


def _types_table(console: Console, by_type: Counter[str]) -> None:
    total = max(sum(by_type.values()), 1)
    table = Table(title="events by type", show_edge=False, title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for event_type, count in by_type.most_common():
        table.add_row(event_type, f"{count:,}", f"{count / total:.1%}")
    console.print(table)


def _invalid_lines(console: Console, invalid: InvalidLog, rejects: Path | None) -> list[str]:
    if not invalid.count:
        return ["invalid     0"]
    codes = ", ".join(f"{code}={n:,}" for code, n in invalid.by_code.most_common())
    where = f" to {rejects}" if rejects else " (use --rejects FILE to keep them all)"
    lines = [f"invalid     {invalid.count:,} lines skipped ({codes}){where}"]
    lines += [f"  {text}" for text in invalid.shown]
    if invalid.count > len(invalid.shown):
        lines.append(f"  ... and {invalid.count - len(invalid.shown):,} more")
    return lines


def print_replay(
    console: Console,
    stats: ReplayStats,
    state: Checkpoint,
    plan: Plan | None,
    invalid: InvalidLog,
    sinks: list[KafkaSink | ArchiveSink],
    checkpoint: Path,
    rejects: Path | None,
    as_json: bool,
    quiet: bool,
    resumed: bool,
) -> None:
    kafka = next((s for s in sinks if isinstance(s, KafkaSink)), None)
    archive = next((s for s in sinks if isinstance(s, ArchiveSink)), None)
    rate = stats.sent / max(stats.seconds, 1e-9)
    status = "interrupted" if stats.interrupted else "complete"
    document: dict[str, Any] = {
        "status": status,
        "resumed": resumed,
        "sent": stats.sent,
        "read": stats.read,
        "filtered": stats.filtered,
        "already_delivered": stats.already_delivered,
        "invalid": invalid.count,
        "invalid_by_code": dict(invalid.by_code),
        **_tally_fields(stats),
        "seconds": round(stats.seconds, 3),
        "events_per_second": round(rate),
        "delivered_total": state.delivered,
        "planned_total": state.total,
        "checkpoint": str(checkpoint),
    }
    if kafka is not None:
        producer_stats = kafka.producer.stats
        document["kafka"] = {
            "topics": list(kafka.topic_of.values()),
            "delivered": producer_stats.delivered,
            "failed": producer_stats.failed,
        }
    if archive is not None:
        document["archive"] = {"dir": str(archive.archive.root), "files": archive.files}
    if plan is not None:
        document["inputs"] = [str(f.path) for f in plan.inputs]
        document["sorted_on_disk"] = [str(p) for p in plan.sorted_inputs]
        document["skipped_files"] = [str(p) for p in plan.skipped]
    if as_json:
        typer.echo(json.dumps(document))
        return
    if quiet:
        return
    lines = [
        f"replayed    {stats.sent:,} events in {stats.seconds:.1f} s ({rate:,.0f}/s), {status}",
        f"read        {stats.read:,} events: {stats.filtered:,} filtered out, "
        f"{stats.already_delivered:,} already in Kafka from before the interruption",
        f"time span   {_span(stats.first, stats.last)}",
    ]
    if plan is not None:
        lines.append(
            f"inputs      {len(plan.inputs):,} files"
            + (f", {len(plan.sorted_inputs)} sorted on disk first" if plan.sorted_inputs else "")
            + (f", {len(plan.skipped)} other files skipped" if plan.skipped else "")
        )
    lines += _invalid_lines(console, invalid, rejects)
    if kafka is not None:
        producer_stats = kafka.producer.stats
        lines.append(
            f"kafka       {producer_stats.delivered:,} delivered, {producer_stats.failed:,} "
            f"failed, to {', '.join(kafka.topic_of.values())}"
        )
    if archive is not None:
        lines.append(f"archive     {archive.files:,} files written to {archive.archive.root}")
    if stats.interrupted:
        lines.append(
            f"checkpoint  {checkpoint}: {state.delivered:,} of {state.total:,} events "
            "delivered; run the same command with --resume to continue"
        )
    else:
        lines.append(f"checkpoint  {checkpoint} (complete)")
    console.print("\n".join(lines), highlight=False, markup=False)
    if stats.by_type:
        _types_table(console, stats.by_type)


def print_dry_run(
    console: Console,
    report: DryRunReport,
    invalid: InvalidLog,
    rejects: Path | None,
    skipped: list[Path],
    as_json: bool,
    quiet: bool,
) -> None:
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "files": report.files,
                    "events": report.events,
                    "matching": report.matching,
                    "invalid": invalid.count,
                    "invalid_by_code": dict(invalid.by_code),
                    "invalid_examples": invalid.shown,
                    **_tally_fields(report),
                    "out_of_order": {str(k): v for k, v in report.out_of_order.items()},
                    "skipped_files": [str(p) for p in skipped],
                }
            )
        )
        return
    if quiet:
        return
    lines = [
        f"dry run     {report.events:,} valid events in {report.files:,} files; nothing sent",
        f"would send  {report.matching:,} events (after --from/--to/--customers)",
        f"time span   {_span(report.first, report.last)}",
    ]
    lines += _invalid_lines(console, invalid, rejects)
    for path, line in report.out_of_order.items():
        lines.append(f"order       {path} goes back in time at line {line}: sorted on disk first")
    if skipped:
        lines.append(f"skipped     {len(skipped)} files that are not events")
    console.print("\n".join(lines), highlight=False, markup=False)
    if report.by_type:
        _types_table(console, report.by_type)
