"""The operator dashboard: pages, conflicts, destinations, members, overview, roles."""
