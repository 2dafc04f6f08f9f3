"""Audiences computed here: definitions, who matches (full and per touched user), membership
kept current after ingest and as time windows pass, and the syncs destinations receive."""
