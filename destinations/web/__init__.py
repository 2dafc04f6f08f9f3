"""Pieces every page is built from, shared by the dashboard and each kind's pages: JSON
display, keyset pagination, edit freshness, the htmx request type, safe redirects."""
