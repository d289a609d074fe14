"""Building and tearing down: the kernel work of networks, containers and endpoints, and its two frames.

``build(record, step, undo)``: the rows are written ``creating`` already; run the kernel step, mark the
rows ``running``, or undo the step (rows included) and re-raise. ``teardown(records, step)`` mirrors it:
mark the rows ``removing`` in one transaction, then the kernel step, whose parts delete their rows after
their kernel objects are gone. A process killed anywhere in either leaves rows in a transitional state for
the next action's reconciliation (netcore.engine.recovery).

A network's objects and each endpoint's come from the network's driver (netcore.network); the container's
namespace, its interfaces' addresses and routes and its /etc/netns files are the same for every driver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from concurrent import futures

from netcore import ipam, network as drivers
from netcore.engine.context import Context
from netcore.engine.processes import MainProcesses
from netcore.kernel import sandbox
from netcore.model import (
    MODE_BRIDGE,
    MODE_NONE,
    STATE_REMOVING,
    STATE_RUNNING,
    Container,
    Endpoint,
    Network,
    removal_order,
)
from netcore.requests import HOST_GATEWAY
from netcore.services import resolvconf


def extra_hosts(entries: tuple[str, ...], gateway: str | None) -> list[tuple[str, str]]:
    """A container's ``--add-host`` entries (``HOST:IP``) as (address, host) lines of its hosts file, in order;
    ``host-gateway`` is ``gateway`` (the container's first network's; an entry is left out without one)."""
    lines = []
    for entry in entries:
        host, _, address = entry.partition(":")
        address = gateway if address == HOST_GATEWAY else address
        if address:
            lines.append((address, host))
    return lines


def _is_plain_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


class Builder:
    """The kernel work of the objects of ``ctx``'s store, through ``ctx.kernel``."""

    def __init__(self, ctx: Context, processes: MainProcesses):
        self.ctx = ctx
        self.processes = processes
        # told of every endpoint row deleted, with its network and container (netcore.engine.overlay: withdrawn
        # from the cluster); None: nobody listens
        self.dropped: Callable[[list[tuple[Endpoint, Network, Container | None]]], None] | None = None
        self._writer: futures.ThreadPoolExecutor | None = None  # a new container's /etc files (build_container)

    def close(self) -> None:
        """Let the thread that writes containers' /etc files end (once it is idle)."""
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None

    # -- the two frames --------------------------------------------------------------------------------------

    def build(self, record: Network | Container | Endpoint, step: Callable[[], None], undo: Callable[[], None]) -> None:
        """Run the kernel ``step`` for ``record`` (written ``creating``); on failure run ``undo`` (which takes
        the rows back too) and re-raise; on success mark it, and a container's endpoints, ``running``."""
        store = self.ctx.store
        try:
            step()
        except BaseException:
            undo()
            raise
        with store.transaction():
            store.set_state(record, STATE_RUNNING)
            if isinstance(record, Container):
                for endpoint in store.endpoints_of_container(record.id):
                    store.set_state(endpoint, STATE_RUNNING)

    def teardown(self, records: Iterable[Network | Container | Endpoint], step: Callable[[], None]) -> None:
        """``build``'s mirror: mark ``records`` (with a container's endpoints) ``removing`` in one transaction,
        then run the kernel ``step``, which deletes each row once its kernel objects are gone."""
        store = self.ctx.store
        with store.transaction():
            for record in records:
                store.set_state(record, STATE_REMOVING)
                if isinstance(record, Container):
                    for endpoint in store.endpoints_of_container(record.id):
                        store.set_state(endpoint, STATE_REMOVING)
        step()

    # -- networks --------------------------------------------------------------------------------------------

    def build_network(self, network: Network) -> None:
        drivers.get(network.driver).build_network(self.ctx.kernel, network)

    def drop_network(self, network: Network) -> None:
        """Tear down the network's kernel objects, then delete its row."""
        drivers.get(network.driver).teardown_network(self.ctx.kernel, network)
        with self.ctx.store.transaction():
            self.ctx.store.delete(network)

    # -- containers and endpoints ----------------------------------------------------------------------------

    def build_container(self, container: Container, endpoints: list[Endpoint]) -> None:
        """The container's namespace, its endpoints and its /etc files (rows written already). The files
        are written on a second thread while this one makes the namespace and the links: both are mostly the
        kernel's work, done without the GIL, so on two cores the files are off a container's path (about 1
        ms of its 8 or so here, more where ext4 is slow to allocate inodes next to many just deleted). The
        step ends when both have; the first error is raised (the writing is waited for either way, so the
        undo that follows finds it done)."""
        files = self.etc_files(container)
        if files is not None and self._writer is None:
            self._writer = futures.ThreadPoolExecutor(1, thread_name_prefix="netcore-files")
        writing = self._writer.submit(self.ctx.kernel.write_etc, container.netns, *files) if files else None
        try:
            if container.mode in (MODE_BRIDGE, MODE_NONE):
                self.ctx.kernel.create_namespace(container.netns)
            for endpoint in endpoints:
                self.build_endpoint(container, endpoint)
        finally:
            if writing is not None:
                futures.wait([writing])
        if writing is not None:
            writing.result()

    def build_endpoint(self, container: Container, endpoint: Endpoint) -> None:
        network = self.ctx.store.network(endpoint.network_id)
        drivers.get(network.driver).build_endpoint(self.ctx.kernel, network, container.netns, endpoint)
        self.configure_interface(container, endpoint, network)

    def teardown_endpoint(self, endpoint: Endpoint, namespace_follows: bool = False) -> None:
        """The endpoint's kernel objects (its row stays: the caller deletes it); ``namespace_follows``: the
        container's own namespace is deleted next (NetworkDriver.teardown_endpoint)."""
        store = self.ctx.store
        network = store.network(endpoint.network_id)
        container = store.find_container_by_id(endpoint.container_id)
        netns = container.netns if container else ""
        drivers.get(network.driver).teardown_endpoint(self.ctx.kernel, network, netns, endpoint, namespace_follows)

    def drop_endpoint(self, endpoint: Endpoint) -> None:
        """Tear down the endpoint's kernel objects, then delete its row."""
        store = self.ctx.store
        gone = [(endpoint, store.network(endpoint.network_id), store.find_container_by_id(endpoint.container_id))]
        self.teardown_endpoint(endpoint)
        with store.transaction():
            store.delete(endpoint)
        self._tell_dropped(gone)

    def _tell_dropped(self, gone: list[tuple[Endpoint, Network, Container | None]]) -> None:
        if self.dropped is not None and gone:
            self.dropped(gone)

    def configure_interface(self, container: Container, endpoint: Endpoint, network: Network) -> None:
        """The interface's addresses, and its default route unless the network is internal."""
        self.ctx.kernel.configure_container_interface(
            container.netns, endpoint.ifname, endpoint.ipv4, ipam.prefixlen(network.subnet),
            None if network.internal else network.gateway, endpoint.ipv6, ipam.prefixlen(network.subnet6),
            None if network.internal else network.gateway6)

    def write_etc(self, container: Container) -> None:
        """resolv.conf names the embedded DNS of each DNS network joined, else the container's own --dns, else
        (the default bridge, --net none) the host's name servers as Docker copies them (netcore.services
        .resolvconf: loopback ones left out, systemd-resolved's rule, Docker's defaults when none is left; in
        sandbox mode the gateway namespace's /etc/netns file first) with the host's search domains and
        options; the container's ``--dns-search`` domains replace the search line (``.``: none), as in
        Docker. hosts names the container's own addresses, then its ``--add-host`` entries
        (``host-gateway``: its first network's gateway)."""
        files = self.etc_files(container)
        if files is not None:
            self.ctx.kernel.write_etc(container.netns, *files)

    def etc_files(self, container: Container) -> tuple[str, str] | None:
        """The texts of the container's resolv.conf and hosts, as ``write_etc`` writes them; None for the
        modes that use the files of their namespace's owner (host, container:)."""
        if container.mode not in (MODE_BRIDGE, MODE_NONE):
            return None
        store, kernel = self.ctx.store, self.ctx.kernel
        endpoints = store.endpoints_of_container(container.id)
        networks = [store.network(e.network_id) for e in endpoints]
        nameservers = [n.dns_addresses[0] for n in networks if n.dns_addresses]
        addresses = [a for e in endpoints for a in (e.ipv4, e.ipv6) if a]
        gateway = networks[0].gateway if networks else None
        hosts = sandbox.hosts_file(container.hostname, addresses, extra_hosts(container.extra_hosts, gateway))
        search = () if container.dns_search == (".",) else container.dns_search
        if not nameservers:
            nameservers = [s for s in container.dns if _is_plain_address(s)]  # resolv.conf has no ports
        if nameservers:
            return sandbox.resolv_conf(nameservers, search), hosts
        host = resolvconf.choose_source(kernel.read_text, self.ctx.namespace, sandbox.ETC_NETNS)
        copied = resolvconf.for_container(host, ipv6=any(e.ipv6 for e in endpoints))
        source = host.source or "no resolv.conf found"
        header = (f"# written by netcore: Docker's default name servers ({source} names none a container can use)"
                  if copied.defaulted else f"# written by netcore: the name servers of {source}, loopback ones left "
                  "out (Docker's rule)")
        return sandbox.resolv_conf(list(copied.nameservers), search if container.dns_search else copied.search,
                                   copied.options, header), hosts

    def drop_container(self, container: Container) -> list[Container]:
        """Tear down whatever exists of the container in the kernel, then its rows; return what was dropped.

        Containers sharing its namespace go first, whatever their state: their rows refer to this one's
        (containers.peer), and they cannot outlive the namespace. So no row is ever left pointing at a
        deleted one. Whatever still runs of the container is killed first, its log removed last.
        Returns the dropped containers, dependents first, this one last.
        """
        store, kernel = self.ctx.store, self.ctx.kernel
        dropped = []
        for dependent in removal_order(store.dependents(container.id)):
            dropped += self.drop_container(dependent)
        self.processes.kill(container)  # a process left in the namespace would outlive it, unnamed
        endpoints = store.endpoints_of_container(container.id)
        gone = [(endpoint, store.network(endpoint.network_id), container) for endpoint in endpoints]
        own_namespace = container.mode in (MODE_BRIDGE, MODE_NONE)
        for endpoint in endpoints:
            self.teardown_endpoint(endpoint, namespace_follows=own_namespace)
        if own_namespace:
            kernel.delete_namespace(container.netns)
            kernel.remove_etc(container.netns)
        with store.transaction():
            for endpoint in endpoints:
                store.delete(endpoint)
            store.delete_ports(container)
            store.delete_process(container)
            store.delete(container)
        self.ctx.processes.forget(container.id)
        self._tell_dropped(gone)
        return [*dropped, container]

    def drop_containers(self, containers: Iterable[Container]) -> list[Container]:
        """``drop_container`` for each, in ``removal_order``; one that went with a namespace it shared is
        dropped once. Returns every container dropped, in the order they went."""
        dropped: list[Container] = []
        for container in removal_order(containers):
            if all(container.id != d.id for d in dropped):
                dropped += self.drop_container(container)
        return dropped
