"""Files: events as JSON lines (:func:`write_jsonl`) and the ground truth as CSV
(:func:`write_truth`, :func:`read_truth`)."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from core.events import Event, encode_event
from offline.simulator.config import CustomerTruth


def write_jsonl(
    events: Iterable[Event],
    destination: str | Path | IO[bytes],
    *,
    chunk_events: int = 4096,
    flush: bool = False,
) -> int:
    """Write ``encode_event(event) + b"\\n"`` per event; return how many were written.

    ``destination`` is a path (created or truncated) or a binary file object (left open).
    Writes are batched ``chunk_events`` at a time; with ``flush`` the file object is flushed
    after each batch (useful for paced output to a pipe).
    """
    with ExitStack() as stack:
        if isinstance(destination, (str, Path)):
            out: IO[bytes] = stack.enter_context(open(destination, "wb"))
        else:
            out = destination
        count, chunk = 0, []
        for event in events:
            chunk.append(encode_event(event))
            if len(chunk) >= chunk_events:
                count += _write_chunk(out, chunk, flush)
                chunk = []
        if chunk:
            count += _write_chunk(out, chunk, flush)
        return count


def _write_chunk(out: IO[bytes], chunk: list[bytes], flush: bool) -> int:
    out.write(b"\n".join(chunk) + b"\n")
    if flush:
        out.flush()
    return len(chunk)


TRUTH_COLUMNS = tuple(f.name for f in fields(CustomerTruth))


def write_truth(truths: Iterable[CustomerTruth], path: str | Path) -> int:
    """Write the ground truth as CSV, one row per customer; return the number of rows.

    Columns, in order: ``customer_id``; ``churn_probability`` (0-1, of churning within the
    period); ``churned`` (``true``/``false``); ``churn_time`` (RFC 3339 UTC, empty if not
    churned); ``cancelled`` (emitted a cancellation event); ``churn_cause`` (``baseline``,
    ``drift`` or empty); ``signup_time`` (UTC, may precede the period); ``initial_level``
    (``free``/``paid``); ``sessions_per_day`` (latent mean before any decline);
    ``decline_start`` (UTC, empty if not churned).
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for truth in truths:
            writer.writerow([_truth_cell(getattr(truth, name)) for name in TRUTH_COLUMNS])
            count += 1
    return count


def _truth_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def read_truth(path: str | Path) -> list[CustomerTruth]:
    """Read a file written by :func:`write_truth` back into :class:`CustomerTruth` objects."""

    def when(text: str) -> datetime | None:
        return datetime.fromisoformat(text) if text else None

    truths = []
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            signup = when(row["signup_time"])
            assert signup is not None
            truths.append(
                CustomerTruth(
                    customer_id=row["customer_id"],
                    churn_probability=float(row["churn_probability"]),
                    churned=row["churned"] == "true",
                    churn_time=when(row["churn_time"]),
                    cancelled=row["cancelled"] == "true",
                    churn_cause=row["churn_cause"] or None,  # type: ignore[arg-type]
                    signup_time=signup,
                    initial_level=row["initial_level"],  # type: ignore[arg-type]
                    sessions_per_day=float(row["sessions_per_day"]),
                    decline_start=when(row["decline_start"]),
                )
            )
    return truths
