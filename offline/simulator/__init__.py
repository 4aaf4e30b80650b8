"""A deterministic simulator of a music-streaming service whose customers churn.

It is the project's embedded default data: the demo, the tests and the benchmarks replay
its events, and its ground truth (who really churned, when, and with which probability)
lets the model and the drift monitors be checked against reality.

The model, loosely after the Sparkify data set:

* Each customer has latent traits: engagement (sessions per day, lognormal), songs per
  session, taste mismatch (drives dislikes), error-proneness (device / network quality),
  sociability (friends, playlists), a plan level (free or paid) and a tenure (most signed up
  before the start, some sign up during the simulated period).
* The probability of churning within the period is a logistic function of those traits plus
  noise, scaled by how long the customer is exposed; the outcome is drawn from it. A churner's
  engagement decays over the 2-5 weeks before the churn time (fewer and shorter sessions,
  fewer plays and likes, more skips, dislikes, help and error pages, maybe a downgrade);
  most then cancel (a last session visits the settings and cancel pages, then a
  ``cancellation`` event marks the churn time), some just go silent. Nothing is emitted
  for a customer after their churn time.
* Paid customers pay a monthly subscription (a ``purchase`` of 9.99 GBP every 30 days);
  anyone may buy extras; unhappy customers are more likely to ask for a ``refund``.
* With ``drift_at`` set, a product change hits everybody from that day on: fewer and shorter
  sessions, ~40 % fewer plays per day, three times the error rate, and an extra churn risk
  that falls mostly on error-prone and free customers.

Times are whole seconds, UTC. Days are counted from ``SimulationConfig.start``: day ``d``
covers ``[start + d days, start + (d + 1) days)``. The simulation runs day by day (memory
is bounded by one day's events) and is vectorised with numpy per day; the same config
always gives the same events, byte for byte.

The package, by concern:

* :mod:`.config`: :class:`SimulationConfig`, :class:`CustomerTruth` and :func:`customer_id`;
* :mod:`.constants`: time units, catalogues (pages, devices, products...) and row kind codes;
* :mod:`.population`: each customer's traits and fate, and :func:`ground_truth`;
* :mod:`.rows`: the per-day row tables (numpy columns) and run helpers;
* :mod:`.sessions`: drawing, placing and numbering sessions and their items;
* :mod:`.plans`: upgrades, downgrades and the plan level of each session;
* :mod:`.transactions`: purchases (upgrades, renewals, extras) and refunds;
* :mod:`.orders`: how an order is drawn, encoded and turned into line items;
* :mod:`.builders`: row tables to :mod:`core.events` objects;
* :mod:`.engine`: the day-by-day simulator behind :func:`simulate`;
* :mod:`.files`: :func:`write_jsonl`, :func:`write_truth` and :func:`read_truth`.
"""

from __future__ import annotations

from offline.simulator.config import CustomerTruth, SimulationConfig, customer_id
from offline.simulator.constants import DAY_S as DAY_S
from offline.simulator.engine import simulate
from offline.simulator.files import TRUTH_COLUMNS as TRUTH_COLUMNS
from offline.simulator.files import read_truth, write_jsonl, write_truth
from offline.simulator.population import ground_truth

__all__ = [
    "CustomerTruth",
    "SimulationConfig",
    "customer_id",
    "ground_truth",
    "read_truth",
    "simulate",
    "write_jsonl",
    "write_truth",
]
