"""The fault-injection suite (``make faults``): see :mod:`bench.faults.suite`."""
