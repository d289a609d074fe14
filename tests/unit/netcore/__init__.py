"""Unit tests of netcore (one module per subject: test_engine.py, test_compose_model.py, ...)."""
