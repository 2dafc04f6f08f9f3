"""The dashboard's forms, a module per page area (the kinds' own forms live in their packages)."""
