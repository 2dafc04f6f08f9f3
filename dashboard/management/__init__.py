"""Management commands of the operator UI."""
