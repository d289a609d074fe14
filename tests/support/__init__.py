"""Helpers the tests share, imported as modules (``from support.engine_calls import ...``)."""
