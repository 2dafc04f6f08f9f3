"""Identity: merging, deleting and importing users, and the conflicts between them."""
