"""People as the operator manages them: merge (previewed, undoable), delete (with suppression),
duplicate-email and billing-id conflicts, customer CSV import and export, and their jobs."""
