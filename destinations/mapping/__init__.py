"""Kana mapping rules: editing them, previewing them, and applying them to stored events."""
