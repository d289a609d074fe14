"""The engine's verbs with Docker's flags as keyword arguments, as the CLI builds their requests: short calls
for tests that drive an Engine directly (the engine itself takes netcore.requests' specs whole)."""

from __future__ import annotations

from netcore.requests import Attachment, ConnectSpec, ContainerSpec, NetworkSpec


def create_network(engine, name: str, subnets=(), ip_range: str | None = None, gateway: str | None = None,
                   internal: bool = False, ipv6: bool = False, dns=(), options: dict | None = None,
                   labels: dict | None = None, driver: str = "bridge"):
    """``network create`` (netcore.engine.Engine.create_network) with ``network create``'s flags."""
    return engine.create_network(NetworkSpec(name, driver, tuple(subnets), ip_range, (gateway,) if gateway else (),
                                             internal, ipv6, tuple(dns), dict(options or {}), dict(labels or {})))


def run_container(engine, name: str | None = None, net: str | None = None, aliases=(), ip: str | None = None,
                  hostname: str | None = None, dns=(), publish=()):
    """``run`` (netcore.engine.Engine.run) with ``run``'s flags: ``publish`` parsed -p values."""
    return engine.run(ContainerSpec.from_flags(name, net, aliases, ip, hostname, dns, publish))


def connect_container(engine, network: str, container: str, aliases=(), ip: str | None = None):
    """``network connect`` (netcore.engine.Engine.connect)."""
    return engine.connect(ConnectSpec(container, Attachment(network, tuple(aliases), ip)))
