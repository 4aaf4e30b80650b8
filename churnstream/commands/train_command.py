"""``churnstream train``: fit a churn model, register it with its model card, and promote it
when it beats the champion on the same validation window (or with ``--force``).

Two sources of data: ``--bootstrap`` (the simulator, for a fresh install) and
``--data online-retail FILE`` (the UCI Online Retail invoice lines, CSV or Parquet). The
result goes to stdout (``--json`` for one JSON object); progress to stderr.
"""

from __future__ import annotations

import json
import shlex
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from churnstream.commands.shared import flag, parse_time

if TYPE_CHECKING:  # the training stack (numpy, scikit-learn) loads only when training
    from collections.abc import Callable

    from core.registry import ModelRegistry
    from offline.evaluate import BandPolicy
    from offline.train import TrainingRun

DATA_SOURCES = ("online-retail",)


def _valid_cutoffs(text: str | None) -> tuple[datetime, ...] | None:
    if not text:
        return None
    return tuple(parse_time(part) for part in text.split(",") if part.strip())


def train_command(
    file: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="With --data: the data file (CSV or Parquet)."),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data", metavar="SOURCE", help="Train on real data: 'online-retail' (needs FILE)."
        ),
    ] = None,
    bootstrap: bool = flag("--bootstrap", help="Fit a first model on simulator output instead."),
    customers: Annotated[int, typer.Option(min=1, help="--bootstrap: simulated customers.")] = 2000,
    days: Annotated[int, typer.Option(min=1, help="--bootstrap: simulated days.")] = 90,
    seed: Annotated[int, typer.Option(help="--bootstrap: simulation seed.")] = 7,
    horizon_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Label window after each cutoff, in days (default 14 simulated, 90 real)."
        ),
    ] = None,
    valid_cutoffs: Annotated[
        str | None,
        typer.Option(
            metavar="DATES",
            help="--data: validation cutoffs, comma-separated ISO dates (UTC). Default: the "
            "last two month starts whose label window the data covers.",
        ),
    ] = None,
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="--data: days of history the features see (default CHURN_RETENTION_DAYS; "
            "the worker must keep as many).",
        ),
    ] = None,
    high_share: Annotated[
        float, typer.Option(min=0.001, max=0.999, help="Share of validation rows in High.")
    ] = 0.10,
    medium_share: Annotated[
        float, typer.Option(min=0.0, max=0.999, help="Share of validation rows in Medium.")
    ] = 0.20,
    min_gain: Annotated[
        float,
        typer.Option(min=0.0, help="ROC AUC the candidate must gain over the champion."),
    ] = 0.0,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote/--no-promote",
            help="Promote the new model if it passes the gate (default) or leave it a candidate.",
        ),
    ] = True,
    force: bool = flag("--force", help="Promote even if the gate refuses."),
    json_output: bool = flag("--json", help="Print the result as one JSON object on stdout."),
    if_no_champion: bool = flag(
        "--if-no-champion",
        help="Do nothing when a champion model exists (for provisioning scripts).",
    ),
) -> None:
    """Train a churn model, register it in CHURN_MODEL_DIR with its model card, and promote
    it if it beats the champion on the same validation window (or with --force).

    The result (version, validation metrics, artifact and card paths, gate) goes to stdout;
    progress to stderr.
    """
    from core.redis_client import connect_redis
    from core.registry import ModelRegistry
    from core.settings import get_settings
    from offline.evaluate import BandPolicy

    err = Console(stderr=True)
    if bootstrap == (data is not None):
        err.print(
            "Choose what to train on: --bootstrap (simulated customers) or "
            f"--data SOURCE FILE (SOURCE: {', '.join(DATA_SOURCES)}).",
            highlight=False,
        )
        raise typer.Exit(2)
    if data is not None and data not in DATA_SOURCES:
        raise typer.BadParameter(
            f"unknown data source {data!r}; known: {', '.join(DATA_SOURCES)}", param_hint="--data"
        )
    if data is not None and file is None:
        raise typer.BadParameter(f"--data {data} needs the data FILE", param_hint="FILE")
    try:
        policy = BandPolicy(high_share=high_share, medium_share=medium_share)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--high-share/--medium-share") from None

    settings = get_settings()
    registry = ModelRegistry(settings, connect_redis(settings))
    if if_no_champion:
        current = registry.champion()
        if current is not None:
            err.print(f"champion {current.version} exists: nothing to do", highlight=False)
            return
    started = time.perf_counter()
    with err.status("training") as status:

        def progress(message: str) -> None:
            status.update(message)
            err.print(f"[dim]{message}[/dim]", highlight=False)

        try:
            if bootstrap:
                from offline.train import simulation_run

                run = simulation_run(
                    customers=customers,
                    days=days,
                    seed=seed,
                    horizon_days=horizon_days or 14,
                    progress=progress,
                )
                command = (
                    f"churnstream train --bootstrap --customers {customers} --days {days} "
                    f"--seed {seed} --horizon-days {horizon_days or 14}"
                )
            else:
                assert file is not None
                run = _train_online_retail(
                    file,
                    horizon_days=horizon_days or 90,
                    valid=_valid_cutoffs(valid_cutoffs),
                    retention_days=retention_days or settings.retention_days,
                    policy=policy,
                    progress=progress,
                    err=err,
                )
                command = (
                    f"churnstream train --data online-retail {shlex.quote(str(file))} "
                    f"--horizon-days {horizon_days or 90} --valid-cutoffs "
                    + ",".join(c[:10] for c in run.training["valid_cutoffs"])
                    + f" --retention-days {run.training['retention_days']}"
                )
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        gate = _gate(registry, run, min_gain, progress)
        run.metrics["gate"] = gate
        progress("registering")
        from offline.model_card import render_model_card

        card = render_model_card(run, gate=gate, command=command)
        manifest = registry.register(
            run.model, run.metrics, run.training, reference=run.reference, card=card
        )
        promoted = False
        if promote and (gate["passed"] or force):
            progress("promoting")
            try:
                registry.promote(manifest.version)
                promoted = True
            except Exception as exc:  # Redis down, or the registry refused
                err.print(
                    f"registered {manifest.version} as a candidate, but promoting it failed: {exc}",
                    highlight=False,
                )
                raise typer.Exit(1) from None
    elapsed = time.perf_counter() - started
    _print_result(run, manifest.version, registry, gate, promoted, promote, elapsed, json_output)


def _train_online_retail(
    file: Path,
    *,
    horizon_days: int,
    valid: tuple[datetime, ...] | None,
    retention_days: int,
    policy: BandPolicy,
    progress: Callable[[str], None],
    err: Console,
) -> TrainingRun:
    from offline.importers.common import ImportFormatError
    from offline.transactions import TransactionTrainingConfig, train_online_retail_file

    if retention_days < 365:
        err.print(
            f"[yellow]note:[/yellow] features look back up to 365 days but see only "
            f"{retention_days} (CHURN_RETENTION_DAYS); set CHURN_RETENTION_DAYS=400 for the "
            "trainer and the worker to use a whole year of history.",
            highlight=False,
        )
    config = TransactionTrainingConfig(
        horizon_days=horizon_days,
        valid_cutoffs=valid,
        retention_days=retention_days,
        band_policy=policy,
    )
    try:
        return train_online_retail_file(file, config, progress=progress)
    except ImportFormatError as exc:
        raise ValueError(str(exc)) from None


def _gate(
    registry: ModelRegistry, run: TrainingRun, min_gain: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """The gate against the current champion, scored on this run's validation rows."""
    from offline.gate import gate_on_window, without_unloadable_champion

    state = registry.champion_state()
    if state.model is not None:
        progress(f"scoring champion {state.model.version} on the validation window")
    result = gate_on_window(run.valid_scores, run.valid, state.model, min_gain=min_gain)
    if state.pointer is not None and state.problem is not None:
        progress(state.problem)
        result = without_unloadable_champion(result, state.pointer.version, state.problem)
    return result.to_dict()


def _print_result(
    run: TrainingRun,
    version: str,
    registry: ModelRegistry,
    gate: dict[str, Any],
    promoted: bool,
    promote: bool,
    elapsed: float,
    json_output: bool,
) -> None:
    metrics, model = run.metrics, run.model
    artifact = registry.artifact_path(version).resolve()
    card = registry.card_path(version).resolve()
    result = {
        "version": version,
        "sha256": registry.manifest(version).sha256,
        "artifact": str(artifact),
        "model_card": str(card),
        "promoted": promoted,
        "gate": gate,
        "metrics": metrics,
        "training": run.training,
        "bands": {"medium": model.bands.medium, "high": model.bands.high},
        "seconds": round(elapsed, 1),
    }
    if json_output:
        typer.echo(json.dumps(result, sort_keys=True, default=str))
        return
    status = "champion" if promoted else "candidate"
    lines = [
        f"version     {version}  ({status})",
        f"artifact    {artifact}",
        f"model card  {card}",
        f"validation  ROC AUC {metrics['roc_auc']:.4f}, PR AUC {metrics['pr_auc']:.4f}, "
        f"Brier {metrics['brier']:.4f}, base rate {metrics['base_rate']:.1%}, "
        f"{metrics['rows']:,} rows",
    ]
    by_cutoff = metrics.get("roc_auc_by_cutoff") or {}
    if by_cutoff:
        lines.append(
            "  by cutoff " + ", ".join(f"{day}: {auc:.4f}" for day, auc in by_cutoff.items())
        )
    baseline = metrics.get("baseline")
    if baseline:
        lines.append(
            f"RFM        ROC AUC {baseline['roc_auc']:.4f} ("
            + ", ".join(f"{d}: {a:.4f}" for d, a in baseline.get("roc_auc_by_cutoff", {}).items())
            + f"); model - baseline {metrics['roc_auc'] - baseline['roc_auc']:+.4f}"
        )
    boosting = metrics.get("boosting")
    if boosting:
        lines.append(f"boosting    ROC AUC {boosting['roc_auc']:.4f} (comparison, not registered)")
    lines.append(f"bands       medium >= {model.bands.medium:.4f}, high >= {model.bands.high:.4f}")
    targeting = metrics.get("targeting")
    if targeting and "0.10" in targeting["budgets"]:
        ratio = targeting["budgets"]["0.10"]["expected_loss_vs_p_churn"]
        lines.append(
            "targeting   at a 10% budget, ranking by expected loss reaches "
            + ("-" if ratio is None else f"{ratio:.2f}x")
            + f" the churned value of ranking by p(churn); best share to contact "
            f"{targeting['best_share']:.0%}"
        )
    lines.append(f"gate        {'passed' if gate['passed'] else 'refused'}: {gate['reason']}")
    if promote and not promoted:
        lines.append("            (kept as a candidate; `churnstream models promote V --force`)")
    lines.append(f"took        {elapsed:.1f} s")
    typer.echo("\n".join(lines))
