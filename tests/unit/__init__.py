"""Unit tests: pure, no root; unit/netcore/ and unit/dnsd/ mirror the two packages."""
