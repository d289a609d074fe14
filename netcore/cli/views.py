"""What users read: Docker-shaped inspect documents and tables. Pure functions of the stored records."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime

from netcore.model import (
    MODE_BRIDGE,
    MODE_CONTAINER,
    PROCESS_EXITED,
    PROCESS_RUNNING,
    STATE_RUNNING,
    Container,
    Endpoint,
    MainProcess,
    Network,
    PortBinding,
    dns_names,
)
from netcore.ports import port_key, published_addresses
from netcore.system.linux import netns_path


def _prefixlen(cidr: str | None) -> int:
    return ipaddress.ip_network(cidr).prefixlen if cidr else 0


def dns_state(network: Network, down: dict[str, str] | None) -> dict:
    """The ``DNS`` field of ``network inspect``: Enabled, Servers, and for a network with names whether
    dnsd listens on its addresses (``Network.dns_addresses``) (``Listening``) and, when not, why (``Error``).
    ``down`` is dnsd's report {address: why it is down}; None when no dnsd answers."""
    state = {"Enabled": bool(network.dns_addresses), "Servers": list(network.dns)}
    if not network.dns_addresses:  # the default bridge; a macvlan network without a shim
        return state
    if down is None:
        return {**state, "Listening": False, "Error": "dnsd is not running"}
    reasons = [down[a] for a in network.dns_addresses if a in down]
    if reasons:
        return {**state, "Listening": False, "Error": "dnsd " + "; ".join(reasons)}
    return {**state, "Listening": True}


def network_document(network: Network, attached: list[tuple[Container, Endpoint]],
                     dns_down: dict[str, str] | None = None, scope: str = "local",
                     peers: list[tuple[str, str]] | None = None, built: bool = True) -> dict:
    """Docker's network inspect document; ``dns_down`` is dnsd's report of its down listeners (see dns_state).
    ``scope``: ``local``, or ``global`` for an overlay network; ``peers``: an overlay network's hosts with a
    container on it, (name, underlay address) each, shown as Docker's ``Peers``; ``built``: whether this host
    built the network (an overlay network is built on a host once a container of it runs there)."""
    config = [{"Subnet": network.subnet, "Gateway": network.gateway}]
    if network.ip_range:
        config[0]["IPRange"] = network.ip_range
    if network.aux_addresses:
        config[0]["AuxiliaryAddresses"] = network.aux_addresses
    if network.subnet6:
        config.append({"Subnet": network.subnet6, "Gateway": network.gateway6})
    containers = {}
    for container, endpoint in attached:
        containers[container.id] = {
            "Name": container.name,
            "EndpointID": endpoint.id,
            "MacAddress": endpoint.mac,
            "IPv4Address": f"{endpoint.ipv4}/{_prefixlen(network.subnet)}" if endpoint.ipv4 else "",
            "IPv6Address": f"{endpoint.ipv6}/{_prefixlen(network.subnet6)}" if endpoint.ipv6 else "",
        }
    document = {
        "Name": network.name,
        "Id": network.id,
        "Created": network.created,
        "Scope": scope,
        "Driver": network.driver,
        "EnableIPv6": network.enable_ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": network.internal,
        "Attachable": False,
        "Ingress": False,
        "ConfigOnly": False,
        "Containers": containers,
        "Options": network.effective_options(),
        "Labels": dict(network.labels),
        "DNS": dns_state(network, dns_down) if built else {
            "Enabled": bool(network.dns_addresses), "Servers": list(network.dns), "Listening": False,
            "Error": "no container of this network runs on this host"},
    }
    if peers is not None:
        document["Peers"] = [{"Name": name, "IP": address} for name, address in peers]
    return document


def port_documents(bindings: list[PortBinding], ipv6: bool) -> tuple[dict, dict]:
    """(``HostConfig.PortBindings``, ``NetworkSettings.Ports``) as Docker shapes them: the first what was
    asked (``{"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}``, one entry per ``-p`` value), the
    second where each port is published (``{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8003"}, ...]}``,
    ``::`` as well where ``ipv6``)."""
    asked: dict[str, list[dict]] = {}
    live: dict[str, list[dict]] = {}
    for binding in bindings:
        key = port_key(binding.protocol, binding.container_port)
        request = {"HostIp": binding.host_ip, "HostPort": binding.requested}
        if request not in asked.setdefault(key, []):
            asked[key].append(request)
        live.setdefault(key, []).extend({"HostIp": address, "HostPort": str(binding.host_port)}
                                        for address in published_addresses(binding, ipv6))
    return asked, live


def ports_column(bindings: list[PortBinding], ipv6: bool) -> str:
    """``ps``'s PORTS: ``0.0.0.0:8080->80/tcp, [::]:8080->80/tcp`` (Docker's, without its range folding)."""
    return ", ".join(f"{f'[{address}]' if ':' in address else address}:{binding.host_port}->"
                     f"{port_key(binding.protocol, binding.container_port)}"
                     for binding in bindings for address in published_addresses(binding, ipv6))


def _seconds_between(earlier: str, later: str) -> float:
    """Seconds from one of netcore's times (``Clock.now``: ISO 8601, ``Z``) to another; 0 for a missing one."""
    try:
        return max(0.0, (datetime.fromisoformat(later.replace("Z", "+00:00"))
                         - datetime.fromisoformat(earlier.replace("Z", "+00:00"))).total_seconds())
    except ValueError:
        return 0.0


def human_duration(seconds: float) -> str:
    """A duration as Docker's ps writes it (go-units HumanDuration): ``Less than a second``, ``5 seconds``,
    ``About a minute``, ``12 minutes``, ``About an hour``, ``3 hours``, ``4 days``, ``2 weeks``, ``3 months``,
    ``2 years``."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def state(container: Container, process: MainProcess | None) -> str:
    """Docker's State.Status of a container: its main process's (``running``, ``exited``, ``created``), or
    for a container without one, a network sandbox, ``running`` while it exists; ``creating``/``removing``
    while an action builds or tears it down."""
    if container.state != STATE_RUNNING:
        return container.state
    return process.status if process is not None else STATE_RUNNING


def status(container: Container, interrupted: bool, process: MainProcess | None = None, now: str = "") -> str:
    """``ps``'s STATUS, as Docker words it: ``Up 5 minutes`` (its main process runs), ``Exited (0) 3 seconds
    ago``, ``Created`` (never started, or its start failed), ``Up`` for a network sandbox without a main
    process; or a transitional state as such: ``creating``/``removing`` while an action is at it,
    ``creating (interrupted)``/``removing (interrupted)`` when the process doing it died (``interrupted``:
    no netcore process holds the state dir's lock) and the next mutating command finishes it (issue 23,
    item 7). ``now``: the time to measure from (``Clock.now``)."""
    if container.state != STATE_RUNNING:
        return f"{container.state} (interrupted)" if interrupted else container.state
    if process is None:
        return "Up"
    if process.status == PROCESS_RUNNING:
        return f"Up {human_duration(_seconds_between(process.started, now))}"
    if process.status == PROCESS_EXITED:
        return f"Exited ({process.exit_code}) {human_duration(_seconds_between(process.finished, now))} ago"
    return "Created"


def process_state(process: MainProcess | None, container: Container, log_path: str = "") -> dict:
    """The ``State`` of a container's inspect document, as Docker shapes it."""
    status = state(container, process)
    return {"Status": status, "Running": status == STATE_RUNNING, "Pid": (process.pid or 0) if process and
            process.status == PROCESS_RUNNING else 0, "ExitCode": (process.exit_code or 0) if process else 0,
            "Error": process.error if process else "", "StartedAt": process.started if process else "",
            "FinishedAt": process.finished if process else ""}


def command_text(process: MainProcess | None, truncate: bool = True) -> str:
    """``ps``'s COMMAND: the main process's words, quoted as Docker quotes them (cut at 20 characters)."""
    if process is None:
        return '""'
    text = " ".join(process.argv)
    if truncate and len(text) > 20:
        text = text[:19] + "…"
    return json.dumps(text, ensure_ascii=False)


def container_document(container: Container, attached: list[tuple[Network, Endpoint]],
                       peer: Container | None = None,
                       published: tuple[list[PortBinding], bool] = ((), False),
                       process: MainProcess | None = None, log_path: str = "") -> dict:
    """Docker's container inspect document; ``published`` is the container's port bindings and whether
    they are published over IPv6 too (``port_documents``); ``process`` its main process (``State``,
    ``Path``, ``Args``, ``Config.Cmd``) and ``log_path`` where its output goes."""
    port_bindings, ports = port_documents(list(published[0]), published[1])
    networks = {}
    for network, endpoint in attached:
        networks[network.name] = {
            "Aliases": list(endpoint.aliases),
            "NetworkID": network.id,
            "EndpointID": endpoint.id,
            "Gateway": network.gateway,
            "IPAddress": endpoint.ipv4 or "",
            "IPPrefixLen": _prefixlen(network.subnet),
            "IPv6Gateway": network.gateway6 or "",
            "GlobalIPv6Address": endpoint.ipv6 or "",
            "GlobalIPv6PrefixLen": _prefixlen(network.subnet6) if endpoint.ipv6 else 0,
            "MacAddress": endpoint.mac,
            "DNSNames": list(dns_names(container, endpoint)) if network.dns_enabled else [],
        }
    if container.mode == MODE_CONTAINER:
        network_mode = f"container:{peer.name if peer else container.peer}"
    elif container.mode == MODE_BRIDGE:
        network_mode = attached[0][0].name if attached else "bridge"
    else:
        network_mode = container.mode
    argv = list(process.argv) if process else []
    return {
        "Id": container.id,
        "Created": container.created,
        "Path": argv[0] if argv else "",
        "Args": argv[1:],
        "State": process_state(process, container),
        "Name": f"/{container.name}",
        "LogPath": log_path if process else "",
        "Config": {"Hostname": container.hostname, "Dns": list(container.dns), "Cmd": argv or None,
                   "Labels": dict(container.labels)},
        "HostConfig": {"NetworkMode": network_mode, "PortBindings": port_bindings, "Dns": list(container.dns),
                       "DnsSearch": list(container.dns_search), "ExtraHosts": list(container.extra_hosts)},
        "NetworkSettings": {
            "SandboxKey": netns_path(container.netns) if container.netns else "",
            "Ports": ports,
            "Networks": networks,
        },
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    return "\n".join(lines)
