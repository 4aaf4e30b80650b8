"""``churnstream models``: look at the registry and move the champion pointer.

``list`` and ``show`` read; ``promote V`` applies the promotion gate (see
:mod:`offline.gate`) unless ``--force``; ``rollback`` restores the previous champion.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from churnstream.commands.shared import fail, flag, print_error

models_app = typer.Typer(no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _registry() -> Any:
    from core.redis_client import connect_redis
    from core.registry import ModelRegistry
    from core.settings import get_settings

    settings = get_settings()
    return ModelRegistry(settings, connect_redis(settings))


def _auc(metrics: dict[str, Any]) -> str:
    value = metrics.get("roc_auc")
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@models_app.command("list")
def list_command(json_output: JsonOption = False) -> None:
    """Every registered model, oldest first, with its status and validation ROC AUC."""
    registry = _registry()
    manifests = registry.list()
    problem = registry.champion_state().problem
    if problem:  # on stderr: --json keeps its shape
        print_error(problem)
    if json_output:
        typer.echo(json.dumps([asdict(m) for m in manifests], sort_keys=True, default=str))
        return
    if not manifests:
        typer.echo(f"no models registered in {registry.root}")
        return
    table = Table(show_edge=False, title_justify="left")
    for column in (
        "version",
        "status",
        "created (UTC)",
        "kind",
        "label",
        "ROC AUC",
        "validated on",
    ):
        table.add_column(column)
    for m in manifests:
        cutoffs = m.training.get("valid_cutoffs") or []
        window = f"{cutoffs[0][:10]}..{cutoffs[-1][:10]}" if cutoffs else "-"
        label = f"{m.training.get('label', '-')} ({m.training.get('horizon_days', '?')} d)"
        table.add_row(m.version, m.status, m.created_at, m.kind, label, _auc(m.metrics), window)
    Console().print(table)


@models_app.command("show")
def show_command(
    version: Annotated[
        str | None, typer.Argument(metavar="VERSION", help="Default: the champion.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """One model's manifest: metrics, training data, split, gate; and where its card is."""
    from core.registry import RegistryError

    registry = _registry()
    if version is None:
        pointer = registry.champion()
        if pointer is None:
            raise fail("there is no champion; name a version (see `churnstream models list`)")
        version = pointer.version
    try:
        manifest = next((m for m in registry.list() if m.version == version), None)
        if manifest is None:
            manifest = registry.manifest(version)  # raises ModelNotFoundError
    except RegistryError as exc:
        raise fail(str(exc)) from None
    card = registry.card_path(version)
    if json_output:
        document = asdict(manifest)
        document["model_card"] = str(card) if card.exists() else None
        document["artifact"] = str(registry.artifact_path(version))
        typer.echo(json.dumps(document, sort_keys=True, default=str))
        return
    metrics, training = manifest.metrics, manifest.training
    lines = [
        f"version     {manifest.version} ({manifest.status})",
        f"kind        {manifest.kind}, {len(manifest.feature_names)} features",
        f"created     {manifest.created_at}",
        f"artifact    {registry.artifact_path(version)} (sha256 {manifest.sha256[:12]}...)",
        f"label       {training.get('label_definition', training.get('label', '-'))}",
        f"data        {training.get('source', '-')}"
        + (f", {training['file']}" if "file" in training else ""),
        f"train on    {', '.join(c[:10] for c in training.get('train_cutoffs', [])) or '-'}",
        f"validate on {', '.join(c[:10] for c in training.get('valid_cutoffs', [])) or '-'}",
        f"ROC AUC     {_auc(metrics)}"
        + (f" (RFM baseline {_auc(metrics['baseline'])})" if metrics.get("baseline") else ""),
    ]
    gate = metrics.get("gate")
    if gate:
        lines.append(
            f"gate        {'passed' if gate.get('passed') else 'refused'}: {gate['reason']}"
        )
    lines.append(f"model card  {card if card.exists() else '- (none)'}")
    typer.echo("\n".join(lines))


@models_app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    force: bool = flag("--force", help="Promote even if the gate refuses."),
    min_gain: Annotated[
        float, typer.Option(min=0.0, help="ROC AUC the candidate must gain over the champion.")
    ] = 0.0,
) -> None:
    """Make VERSION the champion if it beat the current one on the same validation window."""
    from core.registry import RegistryError
    from offline.gate import gate_from_manifests, without_unloadable_champion

    registry = _registry()
    try:
        candidate = registry.manifest(version)
        state = registry.champion_state()
        champion = registry.manifest(state.model.version) if state.model else None
        decision = gate_from_manifests(candidate, champion, min_gain=min_gain)
        if state.pointer is not None and state.problem is not None:
            decision = without_unloadable_champion(decision, state.pointer.version, state.problem)
        if not decision.passed and not force:
            raise fail(f"promotion refused: {decision.reason}")
        registry.promote(version)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    forced = " (forced)" if not decision.passed else ""
    typer.echo(f"champion    {version}{forced}\ngate        {decision.reason}")


@models_app.command("rollback")
def rollback_command() -> None:
    """Restore the previous champion."""
    from core.registry import RegistryError

    registry = _registry()
    try:
        restored = registry.rollback()
    except RegistryError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"champion    {restored} (rolled back)")


@models_app.command("challenger")
def challenger_command(
    register: bool = flag(
        "--register",
        help="Also register the challenger as a candidate model (it serves only once "
        "promoted: `churnstream models promote V`).",
    ),
    json_output: JsonOption = False,
) -> None:
    """The online (river) challenger: learn the archive's newly matured labels, in shadow.

    Each matured weekly cutoff is scored by the challenger and by the champion before the
    challenger learns it; the running ROC AUCs compare them on the same rows.
    `churnstream monitor` does this on every run.
    """
    from core.registry import RegistryError
    from core.settings import get_settings
    from offline.challenger import register_challenger, update_from_archive

    registry = _registry()
    try:
        updated = update_from_archive(get_settings(), registry)
    except (RegistryError, ValueError) as exc:
        raise fail(str(exc)) from None
    if updated is None:
        raise fail("nothing to learn from yet: it needs a champion and an event archive")
    state, results = updated
    summary = state.summary()
    summary["learned_now"] = len(results)
    if register:
        try:
            summary["registered"] = register_challenger(registry, state)
        except (RegistryError, ValueError) as exc:
            raise fail(str(exc)) from None
    if json_output:
        typer.echo(json.dumps(summary, sort_keys=True))
        return
    console = Console()
    console.print(
        f"online challenger ({summary['label']}, {summary['horizon_days']}-day horizon): "
        f"{summary['cutoffs_learned']} matured cutoffs learned ({len(results)} new), "
        f"{summary['rows_learned']:,} rows",
        highlight=False,
    )
    console.print(
        f"running ROC AUC in shadow: challenger {summary['challenger_roc_auc']}, "
        f"champion {summary['champion_roc_auc']} (same rows, scored before learning)",
        highlight=False,
    )
    table = Table(show_edge=False)
    for column in ("cutoff", "rows", "base rate", "challenger AUC", "champion AUC"):
        table.add_column(column)
    for row in summary["history"][-12:]:
        table.add_row(
            row["cutoff"][:10], f"{row['rows']:,}", f"{row['base_rate']:.3f}",
            str(row["challenger_auc"]), str(row["champion_auc"]),
        )  # fmt: skip
    console.print(table)
    if register:
        console.print(f"registered {summary['registered']} as a candidate", highlight=False)
