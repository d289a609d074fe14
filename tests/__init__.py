"""The project's tests: a package, so that every test module has a unique name (tests.unit.dnsd.test_server,
tests.integration.test_agent, ...) and the shared helpers import as ``tests.support`` from the checkout's root."""
