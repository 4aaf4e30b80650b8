"""Scores: the latest score of a customer, and the record published on ``churn-scores``.

A record is published when a customer's band changes (including their first score):

    {"customer_id": "C00042", "score": 0.83, "band": "high", "previous_band": "medium",
     "model_version": "v20260105T101500-3fa9c1", "scored_at": 1767607200.5,
     "last_event_time": 1767600000}

Times are epoch seconds (UTC). Keyed by customer id.
"""

from __future__ import annotations

import msgspec


class Score(msgspec.Struct, frozen=True):
    """The latest score of a customer, as stored and published. A frozen struct: the
    worker makes one per customer scored, at a tenth of a frozen dataclass's cost."""

    customer_id: str
    score: float
    band: str
    model_version: str
    scored_at: float
    last_event_time: int
    value: float | None = None  # value over the horizon (core.targeting); None: not known


class BandChange(msgspec.Struct, kw_only=True):
    """A ``churn-scores`` record."""

    customer_id: str
    score: float
    band: str
    previous_band: str | None
    model_version: str
    scored_at: float
    last_event_time: int

    @classmethod
    def of(cls, score: Score, previous_band: str | None) -> BandChange:
        return cls(
            customer_id=score.customer_id,
            score=score.score,
            band=score.band,
            previous_band=previous_band,
            model_version=score.model_version,
            scored_at=score.scored_at,
            last_event_time=score.last_event_time,
        )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(BandChange)


def encode_band_change(change: BandChange) -> bytes:
    return _ENCODER.encode(change)


def decode_band_change(data: bytes) -> BandChange:
    return _DECODER.decode(data)
