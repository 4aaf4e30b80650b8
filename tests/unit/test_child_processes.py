"""What a child process gets and how it is stopped: every setting reaches it intact
through the environment; "SIGTERM, then SIGKILL" stops it and reaps it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from churnstream.infra.processes import is_alive, kill_process, stop_process
from core.settings import Settings
from core.settings_env import settings_environment, settings_variables


def test_every_setting_reaches_a_child_intact(monkeypatch: pytest.MonkeyPatch) -> None:
    mine = Settings(
        _env_file=None,
        topic_partitions=7,
        redis_key_prefix="child",
        kafka_sasl_password="s3cret",
        as_of="2011-12-10T00:00:00Z",
        archive_enabled=False,
        rescore_tick_seconds=0.25,
        run_dir=Path("/tmp/child-run"),
        plan_values={"free": 1.5, "paid": 150.0},
        log_level="DEBUG",
    )
    for variable, value in settings_variables(mine).items():
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value)
    again = Settings(_env_file=None)
    assert again == mine
    assert again.kafka_sasl_password is not None
    assert again.kafka_sasl_password.get_secret_value() == "s3cret"


def test_an_unset_setting_is_removed_from_the_childs_environment() -> None:
    env = settings_environment(
        Settings(_env_file=None), extra={"EXTRA": "1"}, base={"CHURN_AS_OF": "2020-01-01"}
    )
    assert "CHURN_AS_OF" not in env
    assert env["EXTRA"] == "1"
    assert env["CHURN_TOPIC_PARTITIONS"] == str(Settings(_env_file=None).topic_partitions)


def _child(code: str) -> subprocess.Popen[bytes]:
    # "ready" on stdout once the child's signal handlers are in place
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"ready\n"
    return process


def test_stop_process_ends_a_child_with_sigterm() -> None:
    process = _child("import time; print('ready', flush=True); time.sleep(60)")
    assert stop_process(process, timeout=10) == -signal.SIGTERM
    assert not is_alive(process.pid)


def test_stop_process_kills_a_child_that_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    process = _child(code)
    assert stop_process(process, timeout=0.5) == -signal.SIGKILL
    assert not is_alive(process.pid)


def test_stopping_a_child_that_has_exited_returns_its_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait(timeout=30)
    assert stop_process(process) == 3
    assert kill_process(process) == 3
