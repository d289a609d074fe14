"""Helpers the tests share, imported as modules (``from tests.support.engine_calls import ...``)."""
