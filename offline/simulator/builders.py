"""Builders: turn per-day row tables into :mod:`core.events` objects."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from core import events as ev
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
        self.table: list[Callable[[str, str, datetime, _Values], ev.Event]] = [
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

    def build(self, rows: _Rows) -> Iterator[ev.Event]:
        ids, table, prefix, utc = self.ids, self.table, self.prefix, UTC
        from_timestamp = datetime.fromtimestamp
        tail = (rows.sn.tolist(), rows.i0.tolist(), rows.i1.tolist(), rows.f0.tolist())
        head = (rows.t.tolist(), rows.c.tolist(), rows.kind.tolist(), rows.seq.tolist())
        for t, c, kind, seq, v in zip(*head, zip(*tail, strict=True), strict=True):
            cid = ids[c]
            yield table[kind](f"{prefix}{cid}-{seq}", cid, from_timestamp(t, utc), v)

    # Each builder takes (event_id, customer_id, event_time, (sn, i0, i1, f0)).

    def session_start(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        sn, paid, device, _ = v
        payload = ev.SessionStartPayload(
            session_id=f"{c}-s{sn}", level="paid" if paid else "free", device=_DEVICES[device]
        )
        return ev.SessionStart(event_id=e, customer_id=c, event_time=t, payload=payload)

    def session_end(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.SessionEndPayload(session_id=f"{c}-s{v[0]}", duration_s=v[3])
        return ev.SessionEnd(event_id=e, customer_id=c, event_time=t, payload=payload)

    def page_view(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.PageViewPayload(page=_PAGES[v[1]], session_id=f"{c}-s{v[0]}")
        return ev.PageView(event_id=e, customer_id=c, event_time=t, payload=payload)

    def play(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        sn, song, _, seconds = v
        payload = ev.PlayPayload(
            session_id=f"{c}-s{sn}", item_id=self.songs[song], duration_s=seconds
        )
        return ev.Play(event_id=e, customer_id=c, event_time=t, payload=payload)

    def like(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return ev.Like(event_id=e, customer_id=c, event_time=t, payload=payload)

    def dislike(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.ItemReactionPayload(session_id=f"{c}-s{v[0]}", item_id=self.songs[v[1]])
        return ev.Dislike(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_friend(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        friend = self.ids[v[1]]
        payload = ev.AddFriendPayload(
            session_id=f"{c}-s{v[0]}", friend_id=friend if friend != c else None
        )
        return ev.AddFriend(event_id=e, customer_id=c, event_time=t, payload=payload)

    def add_to_playlist(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        sn, song, playlist, _ = v
        payload = ev.AddToPlaylistPayload(
            session_id=f"{c}-s{sn}", item_id=self.songs[song], playlist_id=f"{c}-pl{playlist}"
        )
        return ev.AddToPlaylist(event_id=e, customer_id=c, event_time=t, payload=payload)

    def help(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.HelpPayload(session_id=f"{c}-s{v[0]}", topic=_HELP_TOPICS[v[1]])
        return ev.Help(event_id=e, customer_id=c, event_time=t, payload=payload)

    def error(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        code, message = _ERRORS[v[1]]
        payload = ev.ErrorPayload(session_id=f"{c}-s{v[0]}", code=code, message=message)
        return ev.Error(event_id=e, customer_id=c, event_time=t, payload=payload)

    def upgrade(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.PlanChangePayload(from_level="free", to_level="paid")
        return ev.Upgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def downgrade(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.PlanChangePayload(from_level="paid", to_level="free")
        return ev.Downgrade(event_id=e, customer_id=c, event_time=t, payload=payload)

    def cancellation(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        payload = ev.CancellationPayload(reason=_REASONS[v[1]])
        return ev.Cancellation(event_id=e, customer_id=c, event_time=t, payload=payload)

    def purchase(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        order, lines, amount, quantity = self._order(v)
        payload = ev.PurchasePayload(
            order_id=f"{c}-o{order}", amount=amount, currency="GBP", quantity=quantity, lines=lines
        )
        return ev.Purchase(event_id=e, customer_id=c, event_time=t, payload=payload)

    def refund(self, e: str, c: str, t: datetime, v: _Values) -> ev.Event:
        order, lines, amount, quantity = self._order(v)
        payload = ev.RefundPayload(
            order_id=f"{c}-r{order}",
            amount=amount,
            currency="GBP",
            quantity=quantity,
            original_order_id=f"{c}-o{order}",
            lines=lines,
        )
        return ev.Refund(event_id=e, customer_id=c, event_time=t, payload=payload)

    def _order(self, v: _Values) -> tuple[int, list[ev.LineItem], float, int]:
        """(order number, lines, amount, items) of a purchase or refund row."""
        order, combo, _, _ = v
        lines = _order_lines(combo, self.price)
        amount, quantity = _order_totals(lines)
        return order, lines, amount, quantity
