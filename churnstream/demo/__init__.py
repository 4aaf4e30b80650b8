"""``churnstream demo``: the whole system running locally on simulated customers.

Starts the local Kafka + Redis (unless they already run), makes sure the registry has a
champion model (training a starter model on simulated history when it has none), starts a
worker (``churnstream worker``) and the API with its dashboard (``churnstream api``) as
child processes, loads the simulated customers' history through Kafka as fast as it goes
(a backfill the worker applies before anything else), then starts the drift monitor
(``churnstream monitor``) and streams the customers' live events at ``--rate``, showing
what flows, who is at risk now and where to look. Ctrl-C (or ``--duration``) stops the
stream and everything the demo started; a stack that was already running is left up.
``--no-worker`` only streams (for users who run their own worker).
"""

from churnstream.demo.command import demo

__all__ = ["demo"]
