"""Reads for the dashboard's pages, a module per page area: queries shaped as pages show them."""
