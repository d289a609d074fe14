"""Integration tests: root, each test in sandbox namespaces of its own (tests/integration/conftest.py)."""
