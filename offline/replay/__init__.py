"""Replay: recorded events back into Kafka (or the archive), in event-time order.

* :mod:`.sources`: input files (JSON lines, archive Parquet), reading from a position, and
  a quick scan of their times;
* :mod:`.ordering`: the order guarantee, external sorting and the k-way merge;
* :mod:`.checkpoint`: what was delivered, saved for ``--resume``;
* :mod:`.engine`: the loop (filters, pacing, sinks, checkpoints);
* :mod:`.resume`: starting or continuing a replay; :mod:`.validate`: ``--dry-run``;
  :mod:`.report`: the summaries. The command is :mod:`churnstream.commands.replay_command`.
"""
