"""Structured logging: one event per line, as ``key=value`` text or as JSON.

Loggers are the standard library's; pass context as ``extra={"customer_id": ...}`` or as
``%s`` arguments. Secrets never belong in log lines: settings hold them as ``SecretStr``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from core.settings import Settings

_NEEDS_QUOTES = re.compile(r'[ "=\n]')
_json_string = json.encoder.encode_basestring_ascii  # json.dumps of a str, without its setup

# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    attributes = record.__dict__
    if attributes.keys() <= _STANDARD:  # most records: nothing passed through ``extra=``
        return {}
    return {k: v for k, v in attributes.items() if k not in _STANDARD}


_second_text: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-21T12:27:30.105+00:00``.

    The date and time of day are formatted once per second (a busy API logs every
    request)."""
    global _second_text
    created = record.created
    second = int(created)
    if second != _second_text[0]:
        _second_text = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second_text[1]}.{int((created - second) * 1000):03d}+00:00"


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info logger=core.producer msg="..." key=value``"""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"ts={_timestamp(record)} level={record.levelname.lower()} "
            f"logger={_quote(record.name)} msg={_quote(record.getMessage())}"
        )
        fields = _extras(record)
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if fields:
            line += " " + " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def _quote(value: object) -> str:
    """Quote a value only when it needs it.

    >>> _quote("plain"), _quote("two words"), _quote(3)
    ('plain', '"two words"', '3')
    """
    text = str(value)
    if text and _NEEDS_QUOTES.search(text) is None:
        return text
    return _json_string(text)


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be swapped,
    e.g. by test runners), rather than the stream that was current at setup."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def skip_unused_record_fields() -> None:
    """Stop collecting, for every log record, what the formatters above never print: the
    caller's file and line, the thread and the process (the switches of the "Optimization"
    section of Python's logging HOWTO; ~10 µs per line, and a busy API logs every request)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure_logging(settings: Settings) -> None:
    """Send logs to stderr in the configured format and level (idempotent). Python's
    warnings go through it too (logger ``py.warnings``), so that every line a process
    writes through Python is in that format (librdkafka writes its own lines, ``%4|...``)."""
    skip_unused_record_fields()
    logging.captureWarnings(True)
    handler = _CurrentStderrHandler()
    formatter = JsonFormatter() if settings.log_format == "json" else KeyValueFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
