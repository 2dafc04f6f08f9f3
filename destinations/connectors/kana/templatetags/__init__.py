"""Template tags for Kana's pages: rule counts and descriptions."""
