"""Template tags for refiner pages."""
