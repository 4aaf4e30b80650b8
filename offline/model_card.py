"""The model card: a Markdown page for people, written next to the model's artifact.

It states what the model predicts (the label), on what data (source, fingerprint, time
window), how it was validated (the time-based split), how well it does beside the
baselines trained and validated on the same split, how its risk bands are cut, which
features weigh most, and what the promotion gate decided.
"""

from __future__ import annotations

from typing import Any

from offline.train import TrainingRun

_METRIC_ROWS = (
    ("ROC AUC (all validation rows)", "roc_auc", "{:.4f}"),
    ("PR AUC (average precision)", "pr_auc", "{:.4f}"),
    ("Brier score (lower is better)", "brier", "{:.4f}"),
    ("log loss (lower is better)", "log_loss", "{:.4f}"),
    ("calibration error (lower is better)", "calibration_error", "{:.4f}"),
    ("precision at the threshold", "precision", "{:.3f}"),
    ("recall at the threshold", "recall", "{:.3f}"),
    ("F1 at the threshold", "f1", "{:.3f}"),
    ("top-decile lift", "top_decile_lift", "{:.2f}"),
    ("threshold (High band cut-off)", "threshold", "{:.4f}"),
)


def _cell(metrics: dict[str, Any] | None, key: str, fmt: str) -> str:
    if not metrics or metrics.get(key) is None:
        return "-"
    return fmt.format(metrics[key])


def _confusion(metrics: dict[str, Any] | None) -> str:
    if not metrics or "confusion" not in metrics:
        return "-"
    c = metrics["confusion"]
    return f"TP {c['tp']:,} / FP {c['fp']:,} / TN {c['tn']:,} / FN {c['fn']:,}"


def _metrics_table(run: TrainingRun) -> list[str]:
    columns: list[tuple[str, dict[str, Any] | None]] = [("this model", run.metrics)]
    if run.metrics.get("baseline"):
        columns.append(("RFM baseline", run.metrics["baseline"]))
    if run.metrics.get("boosting"):
        columns.append(("gradient boosting", run.metrics["boosting"]))
    lines = [
        "| metric | " + " | ".join(name for name, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, key, fmt in _METRIC_ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(m, key, fmt) for _, m in columns) + " |")
    for cutoff in run.metrics.get("roc_auc_by_cutoff", {}):
        cells = [_cell((m or {}).get("roc_auc_by_cutoff"), cutoff, "{:.4f}") for _, m in columns]
        lines.append(f"| ROC AUC, cutoff {cutoff} | " + " | ".join(cells) + " |")
    lines.append("| confusion matrix | " + " | ".join(_confusion(m) for _, m in columns) + " |")
    return lines


def _money(amount: float) -> str:
    return f"{amount:,.0f}"


def _targeting_section(targeting: dict[str, Any] | None) -> list[str]:
    """Retention targeting on the validation cutoffs (see offline.targeting_evaluation)."""
    if not targeting:
        return []
    c = targeting["campaign"]
    out = [
        "",
        "## Retention targeting",
        "",
        f"On the validation rows ({targeting['rows']:,} rows, {targeting['cutoffs']} cutoff(s)), "
        "one campaign per cutoff. A customer's value is their expected revenue over the "
        f"{targeting['horizon_days']:g}-day horizon; {targeting['value_definition']}. "
        f"Churners' value in all: {_money(targeting['churned_value'])}.",
        "",
        "Churned value reached when contacting the top share of customers by each ranking:",
        "",
        "| budget | by expected loss | by p(churn) | by value | expected loss / p(churn) |",
        "|---|---:|---:|---:|---:|",
    ]
    for share, row in targeting["budgets"].items():
        reached, part = row["churned_value"], row["share_of_churned_value"]
        ratio = row["expected_loss_vs_p_churn"]
        cells = [
            f"{_money(reached[k])} ({part[k]:.1%})" for k in ("expected_loss", "p_churn", "value")
        ]
        out.append(
            f"| {float(share):.0%} | " + " | ".join(cells)
            + f" | {'-' if ratio is None else f'{ratio:.2f}x'} |"
        )  # fmt: skip
    out += [
        "",
        f"Profit under the campaign (contact cost {c['contact_cost']:g}, incentive "
        f"{c['incentive']:g}, save rate {c['save_rate']:g}; realized: save rate x (value - "
        "incentive) per churner reached, minus the contact cost of everyone contacted), "
        "contacting the top share by expected net gain:",
        "",
        f"- best share to contact: {targeting['best_share']:.0%} (profit "
        f"{_money(targeting['best_profit'])}); ranking by p(churn) alone: best "
        f"{targeting['best_share_by_p_churn']:.0%} (profit "
        f"{_money(targeting['best_profit_by_p_churn'])})",
        "- the contact list (a positive expected gain) picks "
        f"{targeting['positive_gain_share']:.1%} of customers: profit "
        f"{_money(targeting['profit_at_positive_gain'])}",
    ]
    curve = targeting["profit_curve"]
    points = [
        f"{s:.0%}: {_money(p)}" for s, p in zip(curve["shares"], curve["profit"], strict=True)
    ]
    out.append("- profit curve: " + ", ".join(points[::10]))
    accuracy = targeting.get("value_accuracy")
    if accuracy:
        out += [
            "",
            f"Value estimates against the {accuracy['realized']} ({accuracy['rows']:,} rows):",
            "",
            "| estimate | mean abs. error | Spearman | total estimate / realized |",
            "|---|---:|---:|---:|",
        ]
        for name, row in accuracy["estimates"].items():
            out.append(
                f"| {name} | {row['mae']:,.2f} | {row['spearman']:.3f} | {row['total_ratio']:.3f} |"
            )
    return out


def render_model_card(
    run: TrainingRun, *, gate: dict[str, Any] | None = None, command: str | None = None
) -> str:
    """The model card of ``run`` as Markdown."""
    model, training, metrics = run.model, run.training, run.metrics
    out = [f"# Model card: {model.version}", ""]
    out += [
        f"A churn model of kind `{model.kind}` scoring the probability of: "
        f"**{training.get('label_definition', training.get('label', '?'))}**.",
        "",
        "## Data",
        "",
    ]
    for key, name in (
        ("source", "source"),
        ("file", "file"),
        ("format", "format"),
        ("data_sha256", "sha256 of the data"),
        ("events", "events"),
        ("customers", "customers"),
    ):
        if key in training:
            value = training[key]
            out.append(f"- {name}: {value:,}" if isinstance(value, int) else f"- {name}: {value}")
    if "data_window" in training:
        first, last = training["data_window"]
        out.append(f"- events from {first} to {last} (UTC)")
    out += [
        "",
        "## Label and split",
        "",
        f"- label: `{training.get('label')}` = {training.get('label_definition', '?')}; "
        "rows are every customer seen before a cutoff (features from events strictly before "
        "it, label from events strictly after it)",
        f"- training cutoffs: {', '.join(training.get('train_cutoffs', [])) or '-'} "
        f"({training.get('train_rows', 0):,} rows, churn rate "
        f"{training.get('train_base_rate', metrics.get('train_base_rate', 0)):.1%})",
        f"- validation cutoffs: {', '.join(training.get('valid_cutoffs', [])) or '-'} "
        f"({training.get('valid_rows', metrics.get('rows', 0)):,} rows, churn rate "
        f"{metrics.get('base_rate', 0):.1%})",
    ]
    if "split" in training:
        out.append(f"- split: {training['split']}")
    out += ["", "## Model", "", f"- {model.metadata.get('algorithm', model.kind)}"]
    out.append(f"- {len(model.feature_names)} features, transform `{model.transform}`")
    if "retention_days" in training:
        out.append(
            f"- features see at most {training['retention_days']} days of history "
            "(CHURN_RETENTION_DAYS; the worker must keep at least as much)"
        )
    out += ["", "## Validation metrics", ""]
    out += _metrics_table(run)
    if metrics.get("baseline"):
        out += [
            "",
            f"The RFM baseline is {metrics['baseline'].get('name', 'an RFM model')}, trained and "
            "validated on the same rows in the same run. ROC AUC difference (model - baseline): "
            f"{metrics['roc_auc'] - metrics['baseline']['roc_auc']:+.4f}.",
        ]
    out += [
        "",
        "## Risk bands",
        "",
        f"- policy: {training.get('band_policy', 'top 10% High, next 20% Medium')}",
        f"- cut-offs: High >= {model.bands.high:.4f}, Medium >= {model.bands.medium:.4f}",
    ]
    for band in ("high", "medium", "low"):
        if f"{band}_band_rate" in metrics and f"{band}_band_share" in metrics:
            out.append(
                f"- {band}: {metrics[f'{band}_band_share']:.1%} of validation rows, churn rate "
                f"{metrics[f'{band}_band_rate']:.1%}"
            )
    out += [
        "",
        "## Feature importances",
        "",
        "Standardised coefficients (log-odds per standard deviation of the transformed "
        "feature; positive raises the risk):",
        "",
        "| feature | coefficient |",
        "|---|---:|",
    ]
    out += [f"| `{name}` | {value:+.4f} |" for name, value in run.importances]
    if training.get("monotone_in_silence"):
        out += [
            "",
            "Coefficients are bound to the sign that makes risk rise with silence (a silent "
            "customer's risk never falls as days pass); a coefficient of 0 sits on that bound.",
        ]
    out += _targeting_section(metrics.get("targeting"))
    if gate is not None:
        out += ["", "## Promotion gate", "", f"- {'passed' if gate['passed'] else 'refused'}: "
                f"{gate['reason']}"]  # fmt: skip
    if command:
        out += ["", "## Reproduce", "", "```", command, "```"]
    return "\n".join(out) + "\n"
