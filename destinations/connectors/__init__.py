"""Destination kinds: the connector contract (``base``), the registry of kinds (``registry``)
and one package per kind that owns everything about it."""
