"""The real-data tests skip when the Online Retail file is absent, except in CI, where
they must run: there a missing file fails them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import support_data


def test_a_missing_real_data_file_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(support_data, "ONLINE_RETAIL", tmp_path / "absent.parquet")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        support_data.online_retail_file()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="absent"):
        support_data.online_retail_file()


def test_a_present_file_is_returned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    present = tmp_path / "online_retail.parquet"
    present.write_bytes(b"")
    monkeypatch.setattr(support_data, "ONLINE_RETAIL", present)
    monkeypatch.setenv("CI", "true")
    assert support_data.online_retail_file() == present
