"""Constants shared by the simulator's modules: time units, catalogues and row kind codes.

Catalogue entries are drawn by index in the numpy code; the ``K_*`` codes are the event
kinds of the per-day row tables (see :mod:`offline.simulator.rows`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

DAY_S = 86_400
_NEVER = 2**62  # an epoch-seconds value meaning "never"
_REFERENCE_DAYS = 60.0  # churn probabilities of the traits are per 60 days of exposure
_MIN_TENURE_DAYS = 2  # a customer cannot churn before this many days after signing up
_CANCEL_MARGIN_S = 3_600  # a canceller's ordinary sessions end this long before the churn time
_SESSION_GAP_S = 60  # minimum pause between two sessions of one customer
_N_SONGS = 20_000

# --- Catalogues (indexes are what the numpy code draws) ------------------------------------

_PAGES = ("home", "settings", "about", "logout", "roll_advert", "upgrade", "downgrade", "cancel")
_PAGE_WEIGHTS = {  # by plan level: free, paid
    False: (0.45, 0.06, 0.04, 0.12, 0.25, 0.08, 0.0, 0.0),
    True: (0.60, 0.10, 0.06, 0.16, 0.0, 0.0, 0.08, 0.0),
}
_SETTINGS_PAGE, _CANCEL_PAGE = _PAGES.index("settings"), _PAGES.index("cancel")
_DEVICES = ("web", "ios", "android", "desktop")
_HELP_TOPICS = ("playback", "billing", "account", "offline-mode", "cancel-subscription")
_ERRORS = (
    (404, "page not found"),
    (500, "internal server error"),
    (502, "bad gateway"),
    (503, "service unavailable"),
    (504, "playback timed out"),
)
_REASONS = ("too expensive", "not using it enough", "technical problems", "moved to a competitor")
_TECHNICAL_REASON = _REASONS.index("technical problems")
_SUBSCRIPTION = ("premium-monthly", 9.99, "Premium subscription, one month")
_EXTRAS = (
    ("gift-card-10", 10.0, "Gift card"),
    ("hifi-addon", 2.99, "Hi-fi audio add-on, one month"),
    ("lossless-pack", 4.99, "Lossless album pack"),
    ("merch-tshirt", 19.99, "T-shirt"),
    ("concert-ticket", 45.0, "Concert ticket"),
)
# Diurnal profile: relative session starts per UTC hour (0-23).
_HOURLY = np.array(
    [0.6, 0.4, 0.3, 0.25, 0.25, 0.3, 0.5, 0.9, 1.2, 1.3, 1.3, 1.3,
     1.4, 1.4, 1.3, 1.3, 1.4, 1.6, 1.9, 2.1, 2.1, 1.8, 1.4, 1.0]
)  # fmt: skip

# Event kinds of the per-day row tables. Session items are kinds 2..9 in this order.
(
    K_SESSION_START,
    K_SESSION_END,
    K_PAGE_VIEW,
    K_PLAY,
    K_LIKE,
    K_DISLIKE,
    K_ADD_FRIEND,
    K_ADD_TO_PLAYLIST,
    K_HELP,
    K_ERROR,
    K_UPGRADE,
    K_DOWNGRADE,
    K_CANCELLATION,
    K_PURCHASE,
    K_REFUND,
) = range(15)
_ITEM_KINDS = 8
_ST_RANDOM, _ST_SIGNUP, _ST_CANCEL = 0, 1, 2  # session types


def _utc(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
