"""Importers: real data sets in their own formats, converted into canonical events.

Each importer reads its source format, maps every row to :mod:`core.events` objects with
deterministic event ids (importing the same rows again gives the same ids, so the worker
recognises them), writes the events as JSON lines and sends every row it cannot use to a
reject file with its line number and the reason.
"""
