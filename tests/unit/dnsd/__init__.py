"""Unit tests of dnsd, one module per subject (test_wire.py: dnsd.wire, test_cache.py: dnsd.cache, ...)."""
