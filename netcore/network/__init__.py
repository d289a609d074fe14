"""The network drivers netcore knows, by name: ``get(name)`` is what `network create -d NAME` and every action
on a stored network use. Adding one is a module here and one ``register`` line below (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from netcore.errors import NetcoreError
from netcore.network.base import NetworkDriver
from netcore.network.bridge import BridgeDriver
from netcore.network.macvlan import IpvlanDriver, MacvlanDriver
from netcore.network.overlay import OverlayDriver

__all__ = ["NetworkDriver", "available", "get", "register", "scope", "unregister"]

_DRIVERS: dict[str, NetworkDriver] = {}


def register(driver: NetworkDriver) -> None:
    """Make ``driver`` available under ``driver.name``; ValueError if that name is taken."""
    if driver.name in _DRIVERS:
        raise ValueError(f"a network driver named {driver.name!r} is registered already")
    _DRIVERS[driver.name] = driver


def unregister(name: str) -> None:
    """Forget the driver ``name`` (tests that registered one); no error if there is none."""
    _DRIVERS.pop(name, None)


def available() -> list[str]:
    """The registered drivers' names, sorted."""
    return sorted(_DRIVERS)


def get(name: str) -> NetworkDriver:
    """The driver ``name``; NetcoreError naming the available ones if there is none."""
    try:
        return _DRIVERS[name]
    except KeyError:
        names = available()
        which = f"only {names[0]!r} is available" if len(names) == 1 else \
            f"available are {', '.join(repr(n) for n in names)}"
        raise NetcoreError(f"unsupported driver {name!r}: {which}") from None


def scope(name: str) -> str:
    """Docker's ``Scope`` of a network of driver ``name``: ``local``, or the driver's own (``global`` for an
    overlay network, which every host of its cluster sees; Docker says ``swarm``)."""
    return getattr(_DRIVERS.get(name), "scope", "local")


register(BridgeDriver())
register(MacvlanDriver())
register(IpvlanDriver())
register(OverlayDriver())
