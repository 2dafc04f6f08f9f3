"""Template tags for Refiner's pages: contacts, responses and receiver calls."""
