"""The outbox's encoding (core.outbox): what the commit script stores and delivery reads."""

from __future__ import annotations

import msgspec
import pytest

from core.dlq import DeadLetter
from core.outbox import (
    OutboxRecord,
    band_change_record,
    dead_letter_record,
    decode_entry,
    encode_records,
)
from core.scores import BandChange, decode_band_change


def member(seq: int, records: bytes) -> bytes:
    """An outbox member as the commit script builds it: the msgpack array header of two
    items (0x92), ``cmsgpack.pack(seq)``, then the records as encoded in Python."""
    return b"\x92" + msgspec.msgpack.encode(seq) + records


@pytest.mark.parametrize("seq", [1, 127, 128, 65_535, 65_536, 2**40])
def test_an_entry_reads_back_with_its_sequence_number_and_records(seq: int) -> None:
    records = [
        OutboxRecord("t.events-dlq", b"key", b"\x00\xffraw bytes", [("dlq.code", b"x")]),
        OutboxRecord("t.churn-scores", None, b"{}"),
    ]
    entry = decode_entry(member(seq, encode_records(records)))
    assert entry.seq == seq
    assert entry.records == records


def test_no_records_encode_to_nothing_so_the_script_appends_no_entry() -> None:
    assert encode_records([]) == b""
    assert encode_records([OutboxRecord("t", None, b"")]) != b""


def test_a_dead_letter_keeps_its_key_bytes_and_headers() -> None:
    letter = DeadLetter(
        value=b"{not json",
        reason="not valid JSON",
        code="invalid_json",
        field=None,
        source_topic="customer-activity",
        source_partition=2,
        source_offset=41,
        key=b"C00042",
        rejected_at="2026-03-01T00:00:00+00:00",
    )
    [record] = decode_entry(
        member(3, encode_records([dead_letter_record("events-dlq", letter)]))
    ).records
    assert (record.topic, record.key, record.value) == ("events-dlq", b"C00042", b"{not json")
    assert DeadLetter.from_headers(record.value, record.key, record.headers) == letter


def test_a_band_change_is_keyed_by_its_customer() -> None:
    change = BandChange(
        customer_id="C7",
        score=0.81,
        band="high",
        previous_band="medium",
        model_version="v1",
        scored_at=1.5,
        last_event_time=1,
    )
    [record] = decode_entry(
        member(9, encode_records([band_change_record("churn-scores", change)]))
    ).records
    assert (record.topic, record.key, record.headers) == ("churn-scores", b"C7", None)
    assert decode_band_change(record.value) == change
