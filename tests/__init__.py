"""Switchboard's test suite; its folders mirror the code tree."""
