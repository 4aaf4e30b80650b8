"""Topic names and their creation. The single place that knows what the topics are called."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.events import TopicKind

if TYPE_CHECKING:
    from core.settings import Settings

ACTIVITY = "customer-activity"
TRANSACTIONS = "customer-transactions"
SCORES = "churn-scores"
DLQ = "events-dlq"

BASE_NAMES = (ACTIVITY, TRANSACTIONS, SCORES, DLQ)


@dataclass(frozen=True)
class Topics:
    """The four topic names with the configured prefix applied.

    >>> Topics.from_prefix("staging.").activity
    'staging.customer-activity'
    >>> Topics.from_prefix("").for_kind("transactions")
    'customer-transactions'
    """

    activity: str
    transactions: str
    scores: str
    dlq: str

    @classmethod
    def from_prefix(cls, prefix: str) -> Topics:
        return cls(*(prefix + name for name in BASE_NAMES))

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        return cls.from_prefix(settings.topic_prefix)

    def for_kind(self, kind: TopicKind) -> str:
        """The input topic for ``activity`` or ``transactions`` events."""
        return self.activity if kind == "activity" else self.transactions

    def all(self) -> tuple[str, str, str, str]:
        return (self.activity, self.transactions, self.scores, self.dlq)
