"""The structured log formats (``CHURN_LOG_FORMAT``): one event per line, ``key=value``
text or JSON, with what was passed through ``extra=``."""

from __future__ import annotations

import json
import logging
import sys
import warnings

import pytest

from core.logging import JsonFormatter, KeyValueFormatter, configure_logging
from core.settings import Settings


def record(
    message: str, *args: object, extra: dict[str, object] | None = None
) -> logging.LogRecord:
    log = logging.getLogger("stream.delivery")
    made = log.makeRecord(log.name, logging.WARNING, __file__, 1, message, args, None, extra=extra)
    made.created = 1796594872.5
    return made


def test_key_value_lines_quote_only_values_that_need_it() -> None:
    line = KeyValueFormatter().format(
        record('publication "%s" failed', "p3", extra={"partition": 3, "why": "two words"})
    )
    assert line == (
        "ts=2026-12-06T22:07:52.500+00:00 level=warning logger=stream.delivery "
        'msg="publication \\"p3\\" failed" partition=3 why="two words"'
    )


def test_a_key_value_line_stays_one_line_with_a_traceback() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        made = record("applying failed")
        made.exc_info = sys.exc_info()
    line = KeyValueFormatter().format(made)
    assert "\n" not in line
    assert 'msg="applying failed" exc="Traceback' in line and "ValueError: bad\\nvalue" in line


def test_json_lines_carry_the_extras_and_the_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        made = record("batch %d failed", 7, extra={"customer_id": "C1"})
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    fields = json.loads(line)
    assert {k: fields[k] for k in ("ts", "level", "logger", "msg", "customer_id")} == {
        "ts": "2026-12-06T22:07:52.500+00:00",
        "level": "warning",
        "logger": "stream.delivery",
        "msg": "batch 7 failed",
        "customer_id": "C1",
    }
    assert fields["exc"].startswith("Traceback") and fields["exc"].endswith("ValueError: bad")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_configure_logging_also_formats_python_warnings(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.captureWarnings(False)  # a known start: an earlier test may have left it on
    try:
        configure_logging(Settings(log_format=log_format, log_level="INFO"))  # type: ignore[arg-type]
        logging.getLogger("stream.app").info("worker started")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("an old setting", DeprecationWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    if log_format == "json":
        parsed = [json.loads(line) for line in lines]
        assert [(p["logger"], p["level"]) for p in parsed] == [
            ("stream.app", "info"),
            ("py.warnings", "warning"),
        ]
        assert "DeprecationWarning" in parsed[1]["msg"] and "an old setting" in parsed[1]["msg"]
    else:
        assert lines[0].endswith('level=info logger=stream.app msg="worker started"')
        assert " level=warning logger=py.warnings msg=" in lines[1]
        assert "DeprecationWarning" in lines[1] and "an old setting" in lines[1]
