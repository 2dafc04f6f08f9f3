"""Tests of the operator UI, a module per page area."""
