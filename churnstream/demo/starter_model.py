"""The champion model: keep it, or train and promote a starter model on simulated history."""

from __future__ import annotations

import time

from rich.console import Console

from core.redis_client import connect_redis
from core.registry import ModelRegistry, RegistryError
from core.settings import Settings


def ensure_champion(
    console: Console, settings: Settings, customers: int, days: int, seed: int
) -> None:
    """Keep the registry's champion, or train a starter model on simulated history and
    promote it when there is none (or its artifact cannot be loaded)."""
    registry = ModelRegistry(settings, connect_redis(settings))
    try:
        model = registry.load_champion()
    except RegistryError as exc:
        console.print(f"[yellow]the champion model cannot be loaded:[/] {exc}")
        model = None
    if model is not None:
        console.print(f"champion model {model.version}", highlight=False)
        return
    from offline.train import bootstrap_from_simulation  # numpy and friends: only when needed

    console.print(
        f"no champion model yet: training a starter model on simulated history "
        f"({customers:,} customers, {days} days, seed {seed})…"
    )
    started = time.monotonic()
    with console.status("training a starter model on simulated history…") as status:
        model, metrics, reference = bootstrap_from_simulation(
            customers=customers, days=days, seed=seed, progress=status.update
        )
        status.update("registering and promoting")
        manifest = registry.register(
            model, metrics, model.metadata.get("training", {}), reference=reference
        )
        registry.promote(manifest.version)
    console.print(
        f"starter model {manifest.version} promoted to champion: validation ROC AUC "
        f"{metrics['roc_auc']:.3f}, PR AUC {metrics['pr_auc']:.3f} "
        f"(trained in {time.monotonic() - started:.1f} s)",
        highlight=False,
    )
