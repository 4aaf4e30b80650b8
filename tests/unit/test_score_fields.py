"""The latest score's fields in a customer's hash: the store writes exactly the fields the
key layout names (:data:`core.keys.SCORE_FIELDS`, which the readers use), and reads them
back as written."""

from __future__ import annotations

from core.keys import SCORE_FIELDS
from core.scores import Score
from core.store import decode_customer, score_fields


def test_the_store_writes_the_fields_the_layout_names_and_reads_them_back() -> None:
    score = Score("C1", 0.8125, "high", "v1", scored_at=1000.5, last_event_time=900, value=12.5)
    fields = score_fields(score)
    assert tuple(fields) == SCORE_FIELDS
    stored = decode_customer("C1", {k.encode(): v.encode() for k, v in fields.items()}, False)
    assert stored.score == score
    # a score without a value (written before values were stored) has every other field
    unvalued = Score("C2", 0.1, "low", "v1", scored_at=1.0, last_event_time=0)
    assert tuple(score_fields(unvalued)) == SCORE_FIELDS[:-1]
