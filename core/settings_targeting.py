"""Settings of retention targeting: a campaign's costs and each plan's value, part of
:class:`core.settings.Settings`."""

from __future__ import annotations

from pydantic import field_validator

from core.settings_base import EnvSettings, setting

# Retention campaign defaults: the reference campaign of the expected maximum profit
# measure (Verbraken et al., 2013): customer value 200, incentive 10, contact cost 1, and
# an acceptance rate drawn from Beta(6, 14), whose mean 0.3 is the save rate.
DEFAULT_CONTACT_COST = 1.0
DEFAULT_INCENTIVE = 10.0
DEFAULT_SAVE_RATE = 0.3
DEFAULT_PLAN_VALUES: dict[str, float] = {"free": 0.0, "paid": 200.0}
PLAN_LEVELS = ("free", "paid")


class TargetingSettings(EnvSettings):
    """What contacting a customer costs and what keeping one is worth."""

    # --- Retention targeting -------------------------------------------------------------
    contact_cost: float = setting(
        "CHURN_CONTACT_COST", DEFAULT_CONTACT_COST, ge=0, allow_inf_nan=False
    )
    """Cost of contacting one customer in a retention campaign (currency units). The default is the
    expected-maximum-profit measure's."""
    retention_incentive: float = setting(
        "CHURN_RETENTION_INCENTIVE", DEFAULT_INCENTIVE, ge=0, allow_inf_nan=False
    )
    """Incentive paid to each contacted churner who accepts the offer and stays."""
    save_rate: float = setting("CHURN_SAVE_RATE", DEFAULT_SAVE_RATE, ge=0, le=1)
    """Share of contacted churners who accept the offer and stay (0.3: the mean of the
    expected-maximum-profit measure's Beta(6, 14))."""
    plan_values: dict[str, float] = setting(
        "CHURN_PLAN_VALUES", default_factory=lambda: dict(DEFAULT_PLAN_VALUES)
    )
    """JSON object: a subscriber's value at stake per plan level (free, paid). A customer's value is
    the larger of this and their recent spend rate, net of refunds, times the label horizon."""

    @field_validator("plan_values")
    @classmethod
    def _plan_values(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PLAN_LEVELS))
        if unknown:
            raise ValueError(
                f"unknown plan level(s) {', '.join(unknown)}; known: {', '.join(PLAN_LEVELS)}"
            )
        bad = [level for level, amount in value.items() if not 0 <= amount < float("inf")]
        if bad:
            raise ValueError(f"plan values must be finite and >= 0 (see {', '.join(bad)})")
        return value
