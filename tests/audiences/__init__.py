"""Audiences: definitions, evaluation, membership kept current and synced."""
