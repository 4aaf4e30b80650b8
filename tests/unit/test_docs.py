"""Generated documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

from churnstream.docs import (
    PROMETHEUS_CONFIG,
    PROMETHEUS_RULES,
    _all_settings,
    env_example,
    readme_with_table,
)
from churnstream.infra.prometheus import compose_config
from churnstream.infra.prometheus_alerts import compose_rules

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_with_table(readme) == readme, "run: make docs"


def test_env_example_is_current_and_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), "run: make docs"
    for name, _, _ in _all_settings():
        assert f"# {name}=" in text


def test_compose_prometheus_config_is_current() -> None:
    text = (ROOT / PROMETHEUS_CONFIG).read_text(encoding="utf-8")
    assert text == compose_config(), "run: make docs"


def test_compose_prometheus_rules_are_current() -> None:
    text = (ROOT / PROMETHEUS_RULES).read_text(encoding="utf-8")
    assert text == compose_rules(), "run: make docs"


def test_readme_first_screen_shows_the_two_commands() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:30])
    assert "make demo" in first_screen
    assert "make test" in first_screen
