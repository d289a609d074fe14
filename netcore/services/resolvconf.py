"""The host's resolver configuration, as Docker hands it to containers without embedded DNS. Pure: no I/O.

A container on Docker's default ``bridge`` (or ``--net none``) gets a copy of
the host's resolv.conf (moby's ``libnetwork/internal/resolvconf``):

- the file is ``/etc/resolv.conf``, unless its only name server is
  systemd-resolved's stub ``127.0.0.53``: then ``/run/systemd/resolve/resolv.conf``,
  which lists the servers the stub itself uses (``choose_source``);
- loopback name servers are left out (they are the host's own, unreachable from
  the container's namespace), and IPv6 ones when the container has no IPv6;
- if no server is left, Google's public servers are used (``8.8.8.8``,
  ``8.8.4.4``; and ``2001:4860:4860::8888``, ``2001:4860:4860::8844`` with IPv6),
  as Docker does (``for_container``);
- ``search`` and ``options`` lines are kept.

In sandbox mode netcore's "host" is the gateway namespace: its resolv.conf is
``/etc/netns/<namespace>/resolv.conf`` when that file exists (what ``ip netns
exec`` shows a process there), else the host's ``/etc/resolv.conf``
(``source_paths``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass

ETC_RESOLV_CONF = "/etc/resolv.conf"
SYSTEMD_RESOLV_CONF = "/run/systemd/resolve/resolv.conf"  # systemd-resolved's list of its upstream servers
SYSTEMD_STUB = "127.0.0.53"
DOCKER_DEFAULTS = ("8.8.8.8", "8.8.4.4")  # moby's defaultIPv4Dns
DOCKER_DEFAULTS6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")  # moby's defaultIPv6Dns
MAXNS = 3  # glibc reads at most three name servers


@dataclass(frozen=True)
class ResolvConf:
    """What netcore takes of a resolv.conf: name servers (addresses as written), search domains, options;
    ``source``: the file it was read from ('' for none); ``defaulted``: the name servers are Docker's
    defaults, the source having none a container can use."""

    nameservers: tuple[str, ...] = ()
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    source: str = ""
    defaulted: bool = False


def parse(text: str, source: str = "") -> ResolvConf:
    """The ``nameserver``, ``search`` (or ``domain``) and ``options`` lines of resolv.conf ``text``
    (resolv.conf(5): the last ``search``/``domain`` line wins; comments start with ``#`` or ``;``).
    A name server that is not an IP address is skipped; a zone index (``fe80::1%eth0``) is kept as written."""
    nameservers: list[str] = []
    search: tuple[str, ...] = ()
    options: list[str] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver":
            try:
                ipaddress.ip_address(values[0].split("%", 1)[0])
            except ValueError:
                continue
            nameservers.append(values[0])
        elif keyword in ("search", "domain"):
            search = tuple(values) if keyword == "search" else (values[0],)
        elif keyword == "options":
            options += values
    return ResolvConf(tuple(nameservers), search, tuple(options), source)


def source_paths(namespace: str | None, etc_netns: str = "/etc/netns") -> tuple[str, ...]:
    """Where the gateway namespace's resolv.conf may be, first found first: ``/etc/netns/<namespace>/resolv.conf``
    in sandbox mode, then ``/etc/resolv.conf``."""
    own = (os.path.join(etc_netns, namespace, "resolv.conf"),) if namespace else ()
    return (*own, ETC_RESOLV_CONF)


def choose_source(read: Callable[[str], str | None], namespace: str | None,
                  etc_netns: str = "/etc/netns") -> ResolvConf:
    """The gateway namespace's resolver configuration: the first of ``source_paths`` that ``read`` finds
    (``read(path)`` -> the file's text, or None), with systemd-resolved's rule (only ``127.0.0.53`` in it:
    ``/run/systemd/resolve/resolv.conf`` instead, when that can be read); an empty one if none is found."""
    for path in source_paths(namespace, etc_netns):
        text = read(path)
        if text is None:
            continue
        found = parse(text, path)
        if found.nameservers == (SYSTEMD_STUB,):
            upstream = read(SYSTEMD_RESOLV_CONF)
            if upstream is not None:
                return parse(upstream, SYSTEMD_RESOLV_CONF)
        return found
    return ResolvConf()


def for_container(host: ResolvConf, ipv6: bool = False) -> ResolvConf:
    """What a container without embedded DNS gets from the host's configuration ``host``: its name servers
    without loopback ones (and without IPv6 ones unless ``ipv6``), at most ``MAXNS``; Docker's defaults when
    none is left; the same search domains and options."""
    kept = []
    for server in host.nameservers:
        address = ipaddress.ip_address(server.split("%", 1)[0])
        if address.is_loopback or (address.version == 6 and not ipv6):
            continue
        kept.append(server)
    defaulted = not kept
    if defaulted:
        kept = [*DOCKER_DEFAULTS, *(DOCKER_DEFAULTS6 if ipv6 else ())]
    return ResolvConf(tuple(kept[:MAXNS]), host.search, host.options, host.source, defaulted)
