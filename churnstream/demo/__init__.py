"""``churnstream demo``: the whole system running locally on simulated customers.

Starts the local Kafka + Redis (unless they already run), makes sure the registry has a
champion model (training a starter model on simulated history when it has none), starts a
worker (``churnstream worker``) as a child process, streams simulated customers' events into
Kafka at a live rate and shows what flows and who is at risk now. Ctrl-C (or
``--duration``) stops the stream and everything the demo started; a stack that was already
running is left up. ``--no-worker`` only streams (for users who run their own worker).
"""

from churnstream.demo.command import demo

__all__ = ["demo"]
