"""The latest score in a customer's hash: the store writes it in the one field the key
layout names (:data:`core.keys.SCORE_FIELD`, which the readers use), and reads it back
exactly as written, with or without a value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.keys import SCORE_FIELD
from core.scores import Score
from core.store import decode_customer, score_fields


@given(
    st.floats(0.0, 1.0),
    st.sampled_from(["low", "medium", "high"]),
    st.text(min_size=1, max_size=40),
    st.floats(0.0, 4e9),
    st.integers(-(2**40), 2**40),
    st.none() | st.floats(-1e9, 1e9),
)
def test_the_store_writes_the_field_the_layout_names_and_reads_it_back(
    p: float, band: str, version: str, scored_at: float, last_event: int, value: float | None
) -> None:
    score = Score(
        "C1", p, band, version, scored_at=scored_at, last_event_time=last_event, value=value
    )
    fields = score_fields(score)
    assert tuple(fields) == (SCORE_FIELD,)
    stored = decode_customer("C1", {k.encode(): v for k, v in fields.items()}, False)
    assert stored.score == score


def test_a_customer_without_a_score_reads_back_without_one() -> None:
    assert decode_customer("C1", {}, False).score is None
