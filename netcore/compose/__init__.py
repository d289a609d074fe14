"""Compose files, read as ``docker compose`` reads them, and the plans of ``netcore compose up``/``down``; pure
but for ``files`` (docs/ARCHITECTURE.md lists the modules)."""
