"""Importers: users' own data (transaction tables, event logs) as canonical events.

Each importer is a function ``import_<format>(path, rejects) -> (events, report)`` that
returns events in event-time order and an :class:`ImportReport`; rows it cannot use are
counted by reason and written to the reject file (see :mod:`offline.importers.common`).
This package imports nothing itself, so the CLI can list the importers without loading them.
"""
