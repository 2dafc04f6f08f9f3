"""Hostile input: property-based tests that no generated input makes the server fail."""
