"""The dead-letter record: how a rejected event is written to ``events-dlq``.

The message value is the original bytes, unchanged, and the message key is the original
key (when there was one), so a fixed event can be re-produced as it was. Everything about
the rejection travels in headers, following the Kafka Connect convention:

========================== ==========================================================
header                      meaning
========================== ==========================================================
``dlq.reason``              readable reason, naming the field when one is at fault
``dlq.code``                short category (``invalid_json``, ``missing_field``, ...)
``dlq.field``               dotted path of the offending field, or empty
``dlq.source.topic``        topic the event was read from (empty for files)
``dlq.source.partition``    its partition (``-1`` for files)
``dlq.source.offset``       its offset, or the 1-based line number for files
``dlq.source.file``         the input file, when it came from one
``dlq.rejected_at``         UTC time of the rejection, RFC 3339
========================== ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

HEADER_PREFIX = "dlq."


@dataclass(frozen=True)
class DeadLetter:
    """A rejected event and why.

    >>> dl = DeadLetter(b"{oops", "not valid JSON", "invalid_json", None, "t", 3, 42)
    >>> parsed = DeadLetter.from_headers(dl.value, dl.key, dl.headers())
    >>> parsed.reason, parsed.source_partition, parsed.source_offset
    ('not valid JSON', 3, 42)
    """

    value: bytes
    reason: str
    code: str
    field: str | None
    source_topic: str = ""
    source_partition: int = -1
    source_offset: int = -1
    source_file: str = ""
    key: bytes | None = None
    rejected_at: str | None = None

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        rejected_at = self.rejected_at or datetime.now(UTC).isoformat()
        items = {
            "reason": self.reason,
            "code": self.code,
            "field": self.field or "",
            "source.topic": self.source_topic,
            "source.partition": str(self.source_partition),
            "source.offset": str(self.source_offset),
            "source.file": self.source_file,
            "rejected_at": rejected_at,
        }
        return [(HEADER_PREFIX + name, value.encode()) for name, value in items.items()]

    @classmethod
    def from_headers(
        cls, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None
    ) -> DeadLetter:
        """Rebuild a record read back from the dead-letter topic."""
        found = {
            name[len(HEADER_PREFIX) :]: raw.decode()
            for name, raw in (headers or [])
            if name.startswith(HEADER_PREFIX)
        }
        return cls(
            value=value,
            reason=found.get("reason", ""),
            code=found.get("code", ""),
            field=found.get("field") or None,
            source_topic=found.get("source.topic", ""),
            source_partition=int(found.get("source.partition", "-1")),
            source_offset=int(found.get("source.offset", "-1")),
            source_file=found.get("source.file", ""),
            key=key,
            rejected_at=found.get("rejected_at"),
        )
