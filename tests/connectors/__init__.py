"""Connectors: each destination kind from its request building to its dashboard pages."""
