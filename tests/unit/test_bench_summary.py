"""The benchmark summary says where each benchmark's figures come from."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import runs_of


def test_each_result_gives_its_revision_time_and_cpu(tmp_path: Path) -> None:
    (tmp_path / "worker.json").write_text(
        json.dumps(
            {
                "benchmark": "worker",
                "at": "2026-12-06T15:01:00+00:00",
                "revision": "78d8ce0",
                "worker_eps": 70402,
            }
        )
    )
    (tmp_path / "faults.json").write_text(
        json.dumps(
            {
                "benchmark": "faults",
                "at": "2026-12-06T19:50:47+00:00",
                "revision": "3d3ec4c",
                "machine": {"cpu": "AMD EPYC", "cores": 2},
            }
        )
    )
    (tmp_path / "summary.json").write_text(json.dumps({"figures": {}}))

    assert runs_of(tmp_path) == {
        "faults": {"revision": "3d3ec4c", "at": "2026-12-06T19:50:47+00:00", "cpu": "AMD EPYC"},
        "worker": {"revision": "78d8ce0", "at": "2026-12-06T15:01:00+00:00", "cpu": None},
    }
