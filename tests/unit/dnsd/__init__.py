"""Unit tests of dnsd, one module per subject (test_wire.py: dnsd.core.wire, test_cache.py: dnsd.upstream.cache,
..."""
