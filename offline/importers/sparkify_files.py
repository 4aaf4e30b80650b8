"""Reading Sparkify event logs: checking the format, and the import loop with its rejects.

See :mod:`offline.importers.sparkify` for how rows become events.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from core.events import validation_error_from_msgspec
from offline.importers.sparkify import (
    DEFAULT_SESSION_GAP_S,
    SPARKIFY_FIELDS,
    Converted,
    RowRejected,
    SparkifyConverter,
    SparkifyReport,
    SparkifyRow,
)

_SNIFF_BYTES = 65536
_SNIFF_LINES = 20


class SparkifyFormatError(ValueError):
    """A whole file cannot be imported: unreadable, or not a Sparkify event log."""


@dataclass(frozen=True)
class Reject:
    """A rejected line: where it was, why, and the line itself."""

    file: str
    line: int
    code: str
    field: str | None
    reason: str
    raw: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        what = f"field '{self.field}': " if self.field else ""
        return f"{self.file}:{self.line}: {what}{self.reason}"


@contextmanager
def open_log(path: Path) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """``(lines, raw)``: the decompressed byte stream (gzip is detected by its magic bytes)
    and the file underneath it, whose ``tell()`` measures progress."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except IsADirectoryError:
        raise SparkifyFormatError(
            f"{path} is a directory; expected a Sparkify event log file (JSON lines)"
        ) from None
    except OSError as exc:
        raise SparkifyFormatError(f"cannot read {path}: {exc.strerror}") from None
    try:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped, raw
        else:
            yield raw, raw
    finally:
        raw.close()


def check_format(path: Path) -> None:
    """Raise :class:`SparkifyFormatError` unless ``path`` reads as a Sparkify log: among
    its first lines there must be a JSON object with ``ts`` and ``page``. An empty file
    passes (it imports nothing)."""
    expected = (
        "expected a Sparkify event log: JSON lines, one object per line, with the fields "
        + ", ".join(SPARKIFY_FIELDS)
    )
    with open_log(path) as (stream, _):
        try:
            head = stream.read(_SNIFF_BYTES)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise SparkifyFormatError(f"cannot read {path}: {exc}") from None
    lines = [line.strip() for line in head.split(b"\n")]
    if len(head) == _SNIFF_BYTES:
        lines = lines[:-1]  # the last one may be cut off
    lines = [line for line in lines if line][:_SNIFF_LINES]
    if not lines:
        return
    for line in lines:
        try:
            value = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(value, dict) and "ts" in value and "page" in value:
            return
    preview = lines[0][:80].decode("utf-8", errors="replace")
    raise SparkifyFormatError(f"{path}: {expected} (the file starts with {preview!r})")


_ROW_DECODER = msgspec.json.Decoder(SparkifyRow)
_MAX_RAW_IN_REJECT = 4096


def import_sparkify(
    paths: list[Path],
    emit: Callable[[bytes], object],
    reject: Callable[[Reject], object],
    *,
    session_gap_s: int = DEFAULT_SESSION_GAP_S,
    on_progress: Callable[[int], object] | None = None,
) -> SparkifyReport:
    """Convert every file, in the order given; return the report.

    ``emit`` receives each event's canonical JSON (no newline), in the output order;
    ``reject`` each rejected line. ``on_progress`` gets the bytes read so far (of the files
    as stored, i.e. compressed). Every file is checked first: an unreadable file or one in
    another format raises :class:`SparkifyFormatError` before anything is emitted.
    """
    for path in paths:
        check_format(path)
    report = SparkifyReport(files=[str(p) for p in paths])
    converter = SparkifyConverter(report, session_gap_s)
    done_bytes = 0

    def flush(ready: Iterator[Converted]) -> None:
        for event_type, _customer, encoded in ready:
            emit(encoded)
            report.events += 1
            report.events_by_type[event_type] += 1

    for path in paths:
        with open_log(path) as (stream, raw):
            for number, line in enumerate(stream, start=1):
                line = line.strip()
                if not line:
                    continue
                report.rows += 1
                try:
                    converter.add(_decode_row(line))
                except RowRejected as exc:
                    report.rejects_by_code[exc.code] += 1
                    text = line[:_MAX_RAW_IN_REJECT].decode("utf-8", errors="replace")
                    reject(Reject(str(path), number, exc.code, exc.field, exc.reason, text))
                    continue
                flush(converter.ready())
                if on_progress is not None and number % 4096 == 0:
                    on_progress(done_bytes + raw.tell())
            done_bytes += raw.tell()
    flush(converter.finish())
    if on_progress is not None:
        on_progress(done_bytes)
    return report


def _decode_row(line: bytes) -> SparkifyRow:
    try:
        return _ROW_DECODER.decode(line)
    except msgspec.MsgspecError as exc:
        error = validation_error_from_msgspec(exc)
        raise RowRejected(error.reason, error.field, error.code) from None
