"""Template tags for kana pages."""
