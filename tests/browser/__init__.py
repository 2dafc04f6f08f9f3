"""Browser flows: Debian's chromium driven through Playwright against a live server."""
