"""Starting a replay: continue an interrupted one (``--resume``) or plan a new one.

A new replay of the same plan id starts over: what an earlier run left (its sorted runs)
is removed first. A resumed replay continues from its checkpoint and refuses a checkpoint
of other inputs or options.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from core.events import EventValidator
from offline.replay.checkpoint import Checkpoint, CheckpointError
from offline.replay.engine import InvalidLog
from offline.replay.ordering import Plan, plan_replay
from offline.replay.sources import START, InputFile


def resumed_checkpoint(path: Path, plan_id: str) -> Checkpoint:
    """The checkpoint at ``path`` of an interrupted replay of plan ``plan_id``; a
    :class:`CheckpointError` when there is none or it belongs to another plan."""
    if not path.exists():
        raise CheckpointError(
            f"no interrupted replay of these inputs and options ({path} does not "
            "exist); run without --resume to start one"
        )
    state = Checkpoint.load(path)
    if state.plan != plan_id:
        raise CheckpointError(f"{path} belongs to a replay of other inputs or options")
    return state


def discard_previous(path: Path) -> Checkpoint | None:
    """Remove what an earlier replay with the checkpoint ``path`` left behind (its sorted
    runs); return that checkpoint (``None`` when absent or unreadable)."""
    if not path.exists():
        return None
    try:
        previous = Checkpoint.load(path)
    except CheckpointError:
        return None
    if previous.spill_dir:
        shutil.rmtree(previous.spill_dir, ignore_errors=True)
    return previous


def new_replay(
    path: Path,
    plan_id: str,
    inputs: list[InputFile],
    skipped: list[Path],
    validator: EventValidator,
    invalid: InvalidLog,
    *,
    sort_buffer: int,
    on_status: Callable[[str], object] | None = None,
) -> tuple[Checkpoint, Plan]:
    """Plan a replay of ``inputs`` (files not in time order are sorted into runs next to the
    checkpoint ``path``) and its first checkpoint: every source at its start."""
    spill_dir = path.with_name(f"{path.stem}.runs")
    plan = plan_replay(
        inputs,
        spill_dir,
        validator,
        invalid,
        sort_buffer=sort_buffer,
        on_status=on_status,
        skipped=skipped,
    )
    state = Checkpoint(
        plan=plan_id,
        sources=[source.identity() for source in plan.sources],
        positions=[START] * len(plan.sources),
        total=plan.total,
        spill_dir=str(spill_dir) if plan.sorted_inputs else None,
    )
    return state, plan
