"""The test suite, mirroring the code tree; shared helpers in tests/helpers."""
