"""Builders: turn per-day row tables into :mod:`core.events` objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from core.events import (
    AddFriend,
    AddFriendPayload,
    AddToPlaylist,
    AddToPlaylistPayload,
    Cancellation,
    CancellationPayload,
    Dislike,
    Downgrade,
    Error,
    ErrorPayload,
    Event,
    Help,
    HelpPayload,
    ItemReactionPayload,
    Like,
    PageView,
    PageViewPayload,
    PlanChangePayload,
    Play,
    PlayPayload,
    Purchase,
    PurchasePayload,
    Refund,
    RefundPayload,
    SessionEnd,
    SessionEndPayload,
    SessionStart,
    SessionStartPayload,
    Upgrade,
)
from offline.simulator.config import SimulationConfig
from offline.simulator.constants import _DEVICES, _ERRORS, _HELP_TOPICS, _N_SONGS, _PAGES, _REASONS
from offline.simulator.orders import _order_lines, _order_totals
from offline.simulator.rows import _Rows

_Values = tuple[int, int, int, float]  # (sn, i0, i1, f0) of a row


class _Builders:
    """Turns row tables into :mod:`core.events` objects: the only per-event Python code.

    Ids: event ``sim{seed}-{customer}-{seq}``, session ``{customer}-s{n}``, order
    ``{customer}-o{n}``, refund ``{customer}-r{n}`` (of order n), playlist
    ``{customer}-pl{n}``, song ``song-{n}``; customers are ``C00001``...
    """

    def __init__(self, config: SimulationConfig, ids: list[str]) -> None:
        self.prefix = f"sim{config.seed}-"
        self.ids = ids
        self.price = config.subscription_price
        self.songs = [f"song-{i}" for i in range(_N_SONGS)]
        self.table: list[Callable[[str, str, datetime, _Values], Event]] = [
            self.session_start,
            self.session_end,
            self.page_view,
            self.play,
            self.like,
            self.dislike,
            self.add_friend,
            self.add_to_playlist,
            self.help,
            self.error,
            self.upgrade,
            self.downgrade,
            self.cancellation,
            self.purchase,
            self.refund,
        ]

    def build(self, rows: _Rows) -> Iterator[Event]:
        ids, table, prefix, utc = self.ids, self.table, self.prefix, UTC
        from_timestamp = datetime.fromtimestamp
        tail = (rows.sn.tolist(), rows.i0.tolist(), rows.i1.tolist(), rows.f0.tolist())
        head = (rows.t.tolist(), rows.c.tolist(), rows.kind.tolist(), rows.seq.tolist())
        for t, c, kind, seq, v in zip(*head, zip(*tail, strict=True), strict=True):
            cid = ids[c]
            yield table[kind](f"{prefix}{cid}-{seq}", cid, from_timestamp(t, utc), v)

    # Each builder takes (event_id, customer_id, event_time, (sn, i0, i1, f0)).

    def session_start(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, paid, device, _ = v
        payload = SessionStartPayload(
            session_id=f"{c}-s{sn}", level="paid" if paid else "free", device=_DEVICES[device]
        )
        return SessionStart(event_id=e, customer_id=c, event_time=t, payload=payload)

    def session_end(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = SessionEndPayload(session_id=f"{c}-s{v[0]}", duration_s=v[3])
        return SessionEnd(event_id=e, customer_id=c, event_time=t, payload=payload)

    def page_view(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PageViewPayload(page=_PAGES[v[1]], session_id=f"{c}-s{v[0]}")
        return PageView(event_id=e, customer_id=c, event_time=t, payload=payload)

    def play(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, song, _, seconds = v
        payload = PlayPayload(session_id=f"{c}-s{sn}", item_id=self.songs[song], duration_s=seconds)
        return Play(event_id=e, customer_id=c, event_time=t, payload=payload)

    def like(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return Like(event_id=e, customer_id=c, event_time=t, payload=payload)

    def dislike(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return Dislike(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_friend(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        friend = self.ids[v[1]]
        payload = AddFriendPayload(
            session_id=f"{c}-s{v[0]}", friend_id=friend if friend != c else None
        )
        return AddFriend(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_to_playlist(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        sn, song, playlist, _ = v
        payload = AddToPlaylistPayload(
            session_id=f"{c}-s{sn}", item_id=self.songs[song], playlist_id=f"{c}-pl{playlist}"
        )
        return AddToPlaylist(event_id=e, customer_id=c, event_time=t, payload=payload)

    def help(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = HelpPayload(session_id=f"{c}-s{v[0]}", topic=_HELP_TOPICS[v[1]])
        return Help(event_id=e, customer_id=c, event_time=t, payload=payload)

    def error(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        code, message = _ERRORS[v[1]]
        payload = ErrorPayload(session_id=f"{c}-s{v[0]}", code=code, message=message)
        return Error(event_id=e, customer_id=c, event_time=t, payload=payload)

    def upgrade(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PlanChangePayload(from_level="free", to_level="paid")
        return Upgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def downgrade(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = PlanChangePayload(from_level="paid", to_level="free")
        return Downgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def cancellation(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        payload = CancellationPayload(reason=_REASONS[v[1]])
        return Cancellation(event_id=e, customer_id=c, event_time=t, payload=payload)

    def purchase(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        order, combo, _, _ = v
        lines = _order_lines(combo, self.price)
        amount, quantity = _order_totals(lines)
        payload = PurchasePayload(
            order_id=f"{c}-o{order}", amount=amount, currency="GBP", quantity=quantity, lines=lines
        )
        return Purchase(event_id=e, customer_id=c, event_time=t, payload=payload)

    def refund(self, e: str, c: str, t: datetime, v: _Values) -> Event:
        order, combo, _, _ = v
        lines = _order_lines(combo, self.price)
        amount, quantity = _order_totals(lines)
        payload = RefundPayload(
            order_id=f"{c}-r{order}",
            amount=amount,
            currency="GBP",
            quantity=quantity,
            original_order_id=f"{c}-o{order}",
            lines=lines,
        )
        return Refund(event_id=e, customer_id=c, event_time=t, payload=payload)
