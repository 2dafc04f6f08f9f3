"""Property-based hostile inputs against every entry point: never a 5xx, nothing accepted lost."""
