"""One call per user action: plan it (IPAM, names), record it, build it in the kernel, confirm it.

Every mutating action runs under an exclusive lock on the state dir, in three
steps: (1) a transaction records the new objects in state ``creating`` (or
marks old ones ``removing``), (2) the kernel objects are built or torn down
(a network's and its endpoints' by the network's driver, netcore.drivers),
(3) a transaction marks them ``running`` (or deletes the rows); then dnsd is
synced and the firewall applied (netcore.firewall). A process killed between
the steps leaves rows in a transitional state; since the lock is released
only when its holder dies, the next action that takes the lock knows they are
orphans and reconciles them. docs/ARCHITECTURE.md maps the modules around it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace

from netcore import ipam, network as drivers, ports
from netcore.errors import Conflict, NetcoreError, NotFound
from netcore.firewall import Firewall, NoFirewall, desired_state as desired_firewall
from netcore.kernel import Kernel, sandbox
from netcore.kernel.linux_kernel import LinuxKernel
from netcore.model import (
    DEFAULT_BRIDGE,
    DEFAULT_BRIDGE_DEVICE,
    DEFAULT_BRIDGE_SUBNET,
    DNS_PORT,
    MODE_BRIDGE,
    MODE_CONTAINER,
    MODE_HOST,
    MODE_NONE,
    NAME_MAX,
    NAME_RE,
    OPT_BRIDGE_NAME,
    STATE_CREATING,
    STATE_REMOVING,
    STATE_RUNNING,
    Container,
    Endpoint,
    Network,
    PortBinding,
    parse_dns_server,
    removal_order,
)
from netcore.network import NetworkRequest
from netcore.ports import HostPort, PublishSpec
from netcore.ports.holder import HostPorts, PortError
from netcore.services import resolvconf
from netcore.services.dnsd_control import MANAGED, DnsdControl, dnsd_options, write_dnsd_options
from netcore.services.host_resolver import HostResolver
from netcore.store import Store
from netcore.system.clock import Clock, SystemClock

RESERVED_NETWORKS = (MODE_HOST, MODE_NONE)
_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
               "nifty", "proud", "quirky", "serene", "tender", "vibrant", "wizardly", "zealous")
_NAMES = ("babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "knuth", "lamport",
          "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing", "wozniak")


def validate_name(name: str, what: str) -> str:
    if not name or len(name) > NAME_MAX or not NAME_RE.match(name):
        raise NetcoreError(f"invalid {what} name {name!r}: use up to {NAME_MAX} of [a-zA-Z0-9_.-], "
                           "starting with a letter or digit")
    return name


def parse_server(text: str) -> str:
    """A DNS server as IP or IP:PORT ([v6]:PORT for IPv6 with a port), normalized for the store."""
    try:
        address, port = parse_dns_server(text)
    except ValueError as err:
        raise NetcoreError(f"invalid {str(err).removeprefix('bad ')}") from None
    if port == DNS_PORT:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _show_host(host_ip: str) -> str:
    """A binding's host address as Docker's messages show it: every address is ``0.0.0.0``."""
    return f"[{host_ip}]" if ":" in host_ip else host_ip or "0.0.0.0"


def _is_plain_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


class Engine:
    """netcore's actions on one state dir (the store) and one gateway namespace (None: the host's).

    What it acts on is given, with the real ones as defaults: ``kernel``
    (netcore.kernel.Kernel: namespaces, links, addresses, /etc/netns files),
    ``dnsd`` (a DnsdControl: sync/status/stop), ``clock``
    (netcore.clock.Clock: creation times, the boot ID), ``firewall``
    (netcore.firewall.Firewall: NoFirewall by default; the CLI passes
    netcore.nft_apply.NftablesFirewall) and ``ports`` (netcore.ports.holder.HostPorts:
    binds and holds published host ports). Unit tests pass in-memory ones.
    Checks no privilege (the CLI does, ``missing_capabilities``);
    NetcoreError for a bad namespace name.
    """

    def __init__(self, state_dir: str, namespace: str | None = None, *, kernel: Kernel | None = None,
                 dnsd: DnsdControl | None = None, clock: Clock | None = None, firewall: Firewall | None = None,
                 ports: HostPorts | None = None):
        if namespace is not None:
            validate_name(namespace, "gateway namespace")
        self.kernel: Kernel = kernel if kernel is not None else LinuxKernel(namespace)
        self.state_dir = state_dir
        self.namespace = namespace
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.firewall: Firewall = firewall if firewall is not None else NoFirewall()
        self.ns_prefix = f"{namespace or 'netcore'}-"
        self.store = Store.open(state_dir)
        self.dnsd = dnsd if dnsd is not None else DnsdControl(state_dir, namespace)
        self.ports = ports if ports is not None else HostPorts(state_dir, namespace)
        self.host_resolver = HostResolver(state_dir, namespace)  # the host's resolver, if pointed at dnsd
        self.notes: list[str] = []  # what reconciliation did, for the user to read
        self.warnings: list[str] = []  # what is wrong but did not fail the command (a DNS listener down)
        self.notices: list[str] = []  # what the command changed beyond its own objects (forwarding switched on)
        self.reconciled: list[Network | Container | Endpoint] = []  # rows reconciliation removed in this process
        self._in_action = False
        self._firewall_generation: int | None = None  # the store generation whose firewall this engine applied

    def close(self) -> None:
        self.kernel.close()
        self.store.close()

    def begin_request(self) -> None:
        """Start a command on a long-lived engine (netcored's): what the last one noted is forgotten, and a
        kernel socket left in a gateway namespace that is no longer the live one is let go (it is opened
        again, in the live one, when next needed)."""
        self.notes.clear()
        self.warnings.clear()
        self.notices.clear()
        self.reconciled.clear()  # "just removed by reconciliation" is this command's, not an earlier one's
        self._firewall_generation = None  # the firewall and the held ports are checked again, as a new process did
        self.kernel.revalidate()

    # -- the frame of every action --------------------------------------------

    @contextmanager
    def action(self) -> Iterator[None]:
        """Exclusive across processes; reconciles leftovers first, then, once the action succeeded,
        syncs dnsd and applies the firewall (``apply_firewall``).

        Re-entrant: actions nested in one (a topology's `up`) share its lock, its
        reconciliation, its final dnsd sync and firewall.
        """
        if self._in_action:
            yield
            return
        self.firewall.check_ready()  # nft missing: one line, before anything is changed
        with self._locked():
            self._in_action = True
            try:
                self.reconcile(gateway_created=self.kernel.ensure())
                self._replace_stale_dnsd()
                self._restart_if_options_changed()
                self._ensure_default_bridge()
                yield
                self._warn_dns_down(self.sync_dns())
                self.apply_firewall(force=True)
                self.host_resolver.apply(self.store.networks())  # opt-in: netcore host-dns on
            finally:
                self._in_action = False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The state dir's exclusive lock, across processes; released when its holder ends, however."""
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def action_in_progress(self) -> bool:
        """Whether another netcore process holds the state dir's lock now (an action runs). Rows left
        ``creating`` or ``removing`` while none does are an interrupted action's, which the next
        mutating command finishes (``reconcile``). Takes the lock only for a moment, never waits."""
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def apply_firewall(self, force: bool = False) -> None:
        """Hand the firewall the state the store calls for now (netcore.firewall.desired_state).

        A failure is one NetcoreError line: the action before it stays recorded and
        built (the firewall is derived from the store, not part of the action), and
        the next action applies the whole state again. ``force``: apply it even if
        the live rules look current (``netcore firewall-reload``).
        """
        try:
            self._apply_firewall(force)
        except NetcoreError as err:
            raise NetcoreError(f"firewall not applied: {err}; the change itself is done and the next "
                               "command applies the firewall again") from None

    def _apply_firewall(self, force: bool = False, container_id: str | None = None) -> None:
        """Apply what the store calls for beyond the kernel objects: the published host ports held, the
        firewall, stale conntrack entries of changed UDP mappings cleared. Notices go to ``notices``;
        NetcoreError (one line) on failure.

        Ports first (a port that cannot be bound fails before the firewall maps it), then the firewall,
        then what follows from it: conntrack entries of added and removed UDP/SCTP mappings are deleted
        once the new rules are live (deleted earlier, a packet in between would make a new stale one),
        and the ports no longer published are released. A port of container ``container_id`` that cannot
        be held raises (the action that published it is taken back); one of another container (the port
        holder was killed and a host process took the port meanwhile) is a warning.

        Once this engine applied the state of a store generation, the same generation is not derived and
        applied again (an action that applied before returning, then the frame around it).
        """
        generation = self.store.generation()
        if generation == self._firewall_generation:
            return
        desired = desired_firewall(self.store.networks(), self.store.containers(), self.store.endpoints(),
                                   self.store.ports())
        wanted = {mapping.held: mapping for mapping in desired.ports}
        running = self.ports.held()  # None: no port holder runs
        held = running or set()
        added = set(wanted) - held
        for port, reason in self.ports.hold(added, self._dnsd_addresses()).items():
            if wanted[port].container_id == container_id:
                raise PortError(reason)
            self.warnings.append(f"published port {port} of container {wanted[port].container} is not held: "
                                 f"{reason}; the mapping works, but that process will see none of its packets")
        try:
            self.notices += self.firewall.apply(desired, force) or ()
        except Exception as err:  # noqa: BLE001  (whatever the firewall raises, the user reads one line)
            raise NetcoreError(" ".join(str(err).split()) or type(err).__name__) from None
        gone = held - set(wanted)
        try:
            self.ports.forget(port for port in added | gone if port.protocol != "tcp")
        except PortError as err:
            self.warnings.append(str(err))
        self.ports.release(gone)
        if not wanted and (running is not None or added):
            self.ports.stop()  # nothing to hold: no holder process
        self._firewall_generation = generation

    def _dnsd_addresses(self) -> frozenset[str]:
        """Where dnsd listens (every network's ``dns_addresses``): the sockets a port published on dnsd's
        port on every address shares that port with (netcore.ports.holder.bind, issue 23 item 3)."""
        return frozenset(address for network in self.store.networks() for address in network.dns_addresses)

    def reload_firewall(self) -> None:
        """``netcore firewall-reload``: apply the whole firewall again, whatever the live rules look like."""
        with self.action():
            pass  # every action ends by replacing the whole table

    def assert_firewall(self) -> None:
        """For commands that change nothing: put the firewall back if it is missing or differs (after an
        ``nft flush ruleset``, a reboot), under the state-dir lock so no stale state is applied. A failure is
        a warning: reading must not depend on the firewall."""
        if self.namespace is not None and not self.kernel.namespace_exists(self.namespace):
            return  # nothing built yet, or gone: the next mutating command makes it anew, firewall included
        with self._locked():
            try:
                self._apply_firewall()
            except NetcoreError as err:
                self.warnings.append(f"firewall not applied: {err}")

    def revive_dnsd(self) -> None:
        """Restart a dnsd that should run and is not serving (stopped, its supervisor gave up, the gateway
        namespace was deleted under it), or that runs with other options than ``STATE_DIR/dnsd.options`` now
        holds, so the next lookup is answered as configured; a dnsd killed is restarted by its supervisor.
        Every command calls it, reads too (issue 23, item 6: ``network ls``, ``ps``, ``port`` and ``network
        inspect`` left DNS down). It also keeps ``dnsd.log`` bounded."""
        self.dnsd.rotate_log()
        if not any(n.dns_enabled for n in self.store.networks()):
            return
        found = self.dnsd.status()
        gone = self.namespace is not None and not self.kernel.namespace_exists(self.namespace)
        if (found is None or gone or self._dnsd_is_stale(found[0])
                or (found[1] == MANAGED and self.dnsd.options_changed(found[0]))):
            with self.action():
                pass  # action() rebuilds the gateway namespace, replaces a stale dnsd and syncs (starting dnsd)

    def _restart_if_options_changed(self) -> None:
        """Stop a managed dnsd started with other options than ``STATE_DIR/dnsd.options`` holds now; the sync
        that ends the action starts it with the new ones (a dnsd run by hand is left alone)."""
        found = self.dnsd.status()
        if found is None or found[1] != MANAGED or not self.dnsd.options_changed(found[0]):
            return
        self.dnsd.stop()
        self.notices.append(f"restarted dnsd (pid {found[0]}) with the options of dnsd.options")

    def set_dnsd_options(self, words: list[str]) -> list[str]:
        """``netcore dns-options set WORDS`` (``reset``: no words): write ``STATE_DIR/dnsd.options`` and restart
        the managed dnsd with them, if one should run. If dnsd refuses them (it exits at start), the old file
        is put back, dnsd started again with it, and NetcoreError names dnsd's reason: the options are never
        left broken. Returns the words now in force."""
        with self._locked():
            old = dnsd_options(self.state_dir)
            write_dnsd_options(self.state_dir, words)
        notices = list(self.notices)
        try:
            with self.action():
                pass  # the action restarts a dnsd whose options differ, and its sync starts one that should run
        except NetcoreError as err:
            with self._locked():
                write_dnsd_options(self.state_dir, old)
            with suppress(NetcoreError), self.action():
                pass
            raise NetcoreError(f"dnsd options not changed: {err}") from None
        finally:
            self.notices = notices  # the restart is this command's own doing: its output says what is in force
        return dnsd_options(self.state_dir)

    def _dnsd_is_stale(self, pid: int) -> bool:
        """Whether dnsd ``pid`` runs in another network namespace than the live gateway namespace
        (issue 11, item 7: the gateway namespace was deleted and made anew under it)."""
        return self.namespace is not None and not self.kernel.runs_in_gateway(pid)

    def _replace_stale_dnsd(self) -> None:
        """Stop a managed dnsd left in a gateway namespace that is no longer the live one; the sync that
        ends the action starts one in the live namespace. A foreground dnsd is only reported."""
        found = self.dnsd.status()
        if found is None or not self._dnsd_is_stale(found[0]):
            return
        pid, mode = found
        if mode != MANAGED:
            self.warnings.append(f"dnsd (pid {pid}, started by hand) serves a deleted gateway namespace: "
                                 f"restart it in {self.namespace}")
            return
        self.dnsd.stop()
        self.notes.append(f"replaced dnsd (pid {pid}), which served a deleted gateway namespace")

    def sync_dns(self) -> dict[str, str]:
        """Sync dnsd (started if needed) or stop it when no network needs it.

        Returns {gateway address: why dnsd cannot listen there}, empty when every listener is up.
        """
        if any(n.dns_enabled for n in self.store.networks()):
            return self.dnsd.sync()
        self.dnsd.stop()
        return {}

    def _confirm(self, network: Network, undo, failure: str, container_id: str | None = None) -> None:
        """What an action that adds to ``network`` derives must follow, or the action is taken back.

        Syncs dnsd (issue 11, item 4: dnsd must listen on the network's gateway) and
        applies the firewall (issue 13: nft must take the new ruleset), holding the published
        ports of container ``container_id`` (issue 14: a host port in use fails the run). If dnsd reports
        the gateway address(es) down, a port cannot be held, or the firewall refuses, runs ``undo`` (which takes
        back what the action built, store rows included), syncs and applies again (the
        old ruleset is still live: nft applies all or nothing), and raises NetcoreError
        ``FAILURE: dnsd cannot listen on ADDRESS port 53: ..., held by NAME (pid PID, ...)``
        or ``FAILURE: nft rejected netcore's ruleset ...``.
        """
        reason = None
        if network.dns_enabled:
            down = self.sync_dns()
            reasons = [down[a] for a in network.dns_addresses if a in down]
            if reasons:
                reason = f"dnsd {'; '.join(reasons)}"
        if reason is None:
            try:
                self._apply_firewall(force=True, container_id=container_id)
                return
            except NetcoreError as err:
                reason = str(err)
        undo()
        for follow in (self.sync_dns, lambda: self._apply_firewall(force=True)):
            with suppress(NetcoreError):  # the failure below is the one to report
                follow()
        raise NetcoreError(f"{failure}: {reason}")

    def _warn_dns_down(self, down: dict[str, str]) -> None:
        """Say, after any action, which networks dnsd cannot serve (it retries every second by itself)."""
        if not down:
            return
        for network in self.store.networks():
            reasons = [down[a] for a in network.dns_addresses if a in down]
            if reasons:
                self.warnings.append(f"network {network.name} has no DNS: dnsd {'; '.join(reasons)}")

    # -- networks -------------------------------------------------------------

    def create_network(self, name: str, subnets: list[str] = (), ip_range: str | None = None,
                       gateway: str | None = None, internal: bool = False, ipv6: bool = False,
                       dns: list[str] = (), options: dict | None = None, labels: dict | None = None,
                       driver: str = "bridge") -> Network:
        validate_name(name, "network")
        network_driver = drivers.get(driver)
        if name in RESERVED_NETWORKS:
            raise Conflict(f"network name {name!r} is reserved for the {name} network mode")
        options = network_driver.validate(NetworkRequest(name, tuple(subnets), internal, ipv6, dict(options or {})))
        servers = tuple(parse_server(s) for s in dns)
        parsed = [ipam.parse_subnet(s) for s in subnets]
        v4 = [s for s in parsed if s.version == 4]
        v6 = [s for s in parsed if s.version == 6]
        if len(v4) > 1 or len(v6) > 1:
            raise NetcoreError("give at most one IPv4 and one IPv6 --subnet")
        if v6 and not ipv6:
            raise NetcoreError(f"subnet {v6[0]} is IPv6: add --ipv6 to enable IPv6 on this network")
        if ip_range and ":" in ip_range:
            raise NetcoreError("--ip-range is supported for the IPv4 subnet only")
        gateway4 = gateway if gateway and ":" not in gateway else None
        gateway6 = gateway if gateway and ":" in gateway else None
        if (ip_range or gateway4) and not v4:
            raise NetcoreError("--ip-range and --gateway need the --subnet they belong to")
        if gateway6 and not v6:
            raise NetcoreError("an IPv6 --gateway needs the IPv6 --subnet it belongs to")
        network_id = secrets.token_hex(32)
        bridge = network_driver.device_name(network_id, options)
        with self.action():
            with self.store.transaction():
                if self.store.find_network(name):
                    raise Conflict(f"network with name {name} already exists")
                if any(n.bridge == bridge for n in self.store.networks()):
                    raise Conflict(f"bridge name {bridge} is already used by another network")
                links = self.kernel.links()
                if v4:  # a given subnet may share the routes the driver expects (macvlan: the parent's LAN)
                    ipam.check_no_overlap(v4[0], self._taken_subnets(network_driver.shared_routes(options, links)))
                    subnet = v4[0]
                taken = self._taken_subnets()
                if not v4:
                    subnet = ipam.choose_subnet(taken.values())
                gw = ipam.plan_gateway(subnet, gateway4)
                rng = ipam.plan_ip_range(subnet, ip_range)
                subnet6 = gw6 = None
                if ipv6:
                    subnet6 = v6[0] if v6 else ipam.ula_subnet(network_id)
                    ipam.check_no_overlap(subnet6, taken)
                    gw6 = ipam.plan_gateway(subnet6, gateway6)
                network = Network(
                    id=network_id, name=name, bridge=bridge, subnet=str(subnet), gateway=str(gw),
                    ip_range=str(rng) if rng else None, subnet6=str(subnet6) if subnet6 else None,
                    gateway6=str(gw6) if gw6 else None, internal=internal, dns=servers, options=options,
                    labels=dict(labels or {}), driver=network_driver.name, state=STATE_CREATING,
                    created=self.clock.now())
                network = network_driver.plan_network(network, self.store.networks(), links)
                self._warn_aux_in_range(network)
                self.store.insert(network)
            self._build(network, lambda: self._build_network(network), lambda: self._drop_network(network))
            network = replace(network, state=STATE_RUNNING)

            def undo():
                with self.store.transaction():
                    self.store.set_state(network, STATE_REMOVING)
                self._drop_network(network)
            self._confirm(network, undo, f"network {name} not created")
            return network

    def _taken_subnets(self, shared: set = frozenset()) -> dict[str, ipam.IPNetwork]:
        """Subnets a new network must not overlap: other networks' and the gateway namespace's routes, but
        the ``shared`` ones, (destination, link) pairs the network's driver expects to overlap
        (``NetworkDriver.shared_routes``: a macvlan parent's connected route)."""
        taken: dict[str, ipam.IPNetwork] = {}
        for n in self.store.networks():
            taken[f"network {n.name}"] = ipaddress.ip_network(n.subnet)
            if n.subnet6:
                taken[f"network {n.name} (IPv6)"] = ipaddress.ip_network(n.subnet6)
        bridges = {ipaddress.ip_network(n.subnet) for n in self.store.networks()}
        for route in self.kernel.routes():
            destination = route.destination
            if destination not in bridges and not destination.is_link_local and tuple(route) not in shared:
                via = f" via {route.device}" if route.device else ""
                taken[f"route {destination}{via} in the gateway namespace"] = destination
        return taken

    def _warn_aux_in_range(self, network: Network) -> None:
        """A warning for each of ``network``'s ``aux_addresses`` (the host's own on a macvlan parent) inside the
        range its containers get addresses from: IPAM keeps it out, but the LAN's other machines are not
        known to netcore (issue 23, item 1)."""
        subnet = ipaddress.ip_network(network.subnet)
        pool = ipaddress.ip_network(network.ip_range) if network.ip_range else subnet
        for name, address in network.aux_addresses.items():
            if ipaddress.ip_address(address) in pool:
                self.warnings.append(
                    f"network {network.name}: the host's address {address} ({name}) is inside {pool}, where "
                    "containers get their addresses; netcore keeps it out, but not the LAN's other machines' "
                    "addresses: give --ip-range a share of the LAN that no other machine uses")

    def _build_network(self, network: Network) -> None:
        drivers.get(network.driver).build_network(self.kernel, network)

    def _drop_network(self, network: Network) -> None:
        drivers.get(network.driver).teardown_network(self.kernel, network)
        with self.store.transaction():
            self.store.delete(network)

    def remove_network(self, ref: str) -> Network:
        """Remove network ``ref``; Conflict for the default bridge or while containers are attached (named).
        A network this command's reconciliation removed (a ``network rm`` killed part way) counts as
        removed. Returns the network."""
        with self.action():
            try:
                network = self.store.network(ref)
            except NotFound:
                found = self._just_reconciled(Network, ref)
                if found is None:
                    raise
                return found
            if network.name == DEFAULT_BRIDGE:
                raise Conflict(f"{DEFAULT_BRIDGE} is a pre-defined network and cannot be removed")
            attached = self.store.endpoints_on_network(network.id)
            if attached:
                names = sorted(self.store.container(e.container_id).name for e in attached)
                raise Conflict(f"network {network.name} has active endpoints: {', '.join(names)}")
            with self.store.transaction():
                self.store.set_state(network, STATE_REMOVING)
            self._drop_network(network)
            return network

    def _ensure_default_bridge(self) -> None:
        if self.store.find_network(DEFAULT_BRIDGE):
            return
        network = self._plan_default_bridge()
        with self.store.transaction():
            self.store.insert(network)
        self._build(network, lambda: self._build_network(network), lambda: self._drop_network(network))

    def _plan_default_bridge(self) -> Network:
        """The default ``bridge`` as the first action builds it: Docker's 172.17.0.0/16 unless a network or a
        route of the gateway namespace overlaps it, else the lowest free pool subnet; its ID is the state
        dir's own (``default_bridge_id``), so it is the same before and after it is built."""
        gone = self.namespace is not None and not self.kernel.namespace_exists(self.namespace)
        taken = {} if gone else self._taken_subnets()  # no gateway namespace yet: no route there either
        preferred = ipaddress.ip_network(DEFAULT_BRIDGE_SUBNET)
        subnet = (preferred if not any(preferred.overlaps(t) for t in taken.values())
                  else ipam.choose_subnet(taken.values()))
        return Network(id=self.default_bridge_id(), name=DEFAULT_BRIDGE, bridge=DEFAULT_BRIDGE_DEVICE,
                       subnet=str(subnet), gateway=str(ipam.plan_gateway(subnet, None)),
                       options={OPT_BRIDGE_NAME: DEFAULT_BRIDGE_DEVICE}, state=STATE_CREATING,
                       created=self.clock.now())

    def default_bridge_id(self) -> str:
        """The default bridge's 64-hex ID: drawn once per state dir, kept in the store's bookkeeping."""
        return self.store.meta_setdefault("default_bridge_id", secrets.token_hex(32))

    def networks_to_show(self) -> list[Network]:
        """What ``network ls`` lists: the stored networks, with the default ``bridge`` before the first
        mutating command has built it (the README promises it from the first use: issue 23, item 5).
        A read: no lock is taken and nothing is built; the bridge shown is the one the next action builds,
        with the same ID."""
        networks = self.store.networks()
        if any(n.name == DEFAULT_BRIDGE for n in networks):
            return networks
        return [replace(self._plan_default_bridge(), state=STATE_RUNNING, created=""), *networks]

    def network_to_show(self, ref: str) -> Network:
        """The network ``ref`` names (as ``Store.network`` resolves it), the default ``bridge`` included before
        it is built (``networks_to_show``); NotFound as the store raises it."""
        try:
            return self.store.network(ref)
        except NotFound:
            planned = next((n for n in self.networks_to_show() if n.name == DEFAULT_BRIDGE), None)
            hexadecimal = bool(ref) and all(c in "0123456789abcdef" for c in ref)
            if planned is not None and (ref in (planned.name, planned.id) or
                                        (hexadecimal and planned.id.startswith(ref))):
                return planned
            raise

    # -- containers -----------------------------------------------------------

    def run(self, name: str | None = None, net: str | None = None, aliases: list[str] = (),
            ip: str | None = None, hostname: str | None = None, dns: list[str] = (),
            publish: list[PublishSpec] = ()) -> Container:
        """Create a container on network ``net`` (default: the default bridge; or ``host``, ``none``,
        ``container:NAME``) with its first endpoint, and publish ``publish`` (netcore.ports.parse_publish)
        on the host. NetcoreError (one line, nothing changed) for a bad name, a taken name, address or host
        port (``Bind for 0.0.0.0:8080 failed: port is already allocated ...``), two ``publish`` specs that
        collide with each other (exit 2; overlapping ones that agree are merged, netcore.ports.plan_requests),
        or -p without a network that can be reached (host, none, container: modes; an internal network)."""
        if name is not None:
            validate_name(name, "container")
        for alias in aliases:
            validate_name(alias, "alias")
        if hostname is not None:
            validate_name(hostname, "hostname")
        servers = tuple(parse_server(s) for s in dns)
        container_id = secrets.token_hex(32)
        mode, peer_ref = self._network_mode(net)
        if mode != MODE_BRIDGE and (aliases or ip):
            raise NetcoreError(f"--net-alias and --ip need a bridge network, not --net {net}")
        if mode != MODE_BRIDGE and publish:
            raise NetcoreError(f"-p needs a bridge network, not --net {net}: "
                               + ("the container uses the host's ports directly" if mode == MODE_HOST else
                                  "its ports are published by the container whose namespace it shares"
                                  if mode == MODE_CONTAINER else "it has no network to publish from"))
        try:
            requests = ports.plan_requests(publish)  # two -p of this run that collide: one line, exit 2
        except ports.PublishError as err:
            raise NetcoreError(str(err), exit_code=2) from None
        with self.action():
            with self.store.transaction():
                name = name or self._generate_name()
                if self.store.find_container(name):
                    raise Conflict(f"the container name {name!r} is already in use")
                namespace, peer = f"{self.ns_prefix}{container_id[:12]}", None
                if mode == MODE_HOST:
                    namespace = self.namespace or ""
                elif mode == MODE_CONTAINER:
                    target = self.store.container(peer_ref)
                    if target.mode == MODE_CONTAINER:
                        target = self.store.container(target.peer)
                    namespace, peer = target.netns, target.id
                container = Container(id=container_id, name=name, hostname=hostname or container_id[:12],
                                      netns=namespace, mode=mode, peer=peer, dns=servers, state=STATE_CREATING,
                                      created=self.clock.now())
                self.store.insert(container)
                endpoints = []
                if mode == MODE_BRIDGE:
                    network = self.store.network(net or DEFAULT_BRIDGE)
                    endpoints.append(self._plan_endpoint(container, network, aliases, ip))
                    self._plan_ports(container, network, requests)
            self._build(container, lambda: self._build_container(container, endpoints),
                        lambda: self._drop_container(container))
            container = replace(container, state=STATE_RUNNING)

            def undo():
                self._mark_removing([container])
                self._drop_container(container)
            for endpoint in endpoints:
                self._confirm(self.store.network(endpoint.network_id), undo, f"container {name} not created",
                              container.id)
            return container

    def _plan_ports(self, container: Container, network: Network, requests: list[ports.PortRequest]) -> None:
        """Choose a host port for each of ``requests`` (netcore.ports.plan_requests: merged, exact ports
        first) and record the bindings (inside the transaction that records the container). Each port is
        checked free in the store (netcore.ports.conflict: every address collides with each one) and
        bindable in the gateway namespace now; a fixed port that is not is one line, a range or an
        ephemeral request takes the next that is."""
        if not requests:
            return
        if network.internal:
            raise NetcoreError(f"-p needs a network that is not internal: nothing outside network {network.name} "
                               "reaches its containers (--internal)")
        if not network.routed_by_gateway:  # Docker ignores -p there; one line says so instead
            raise NetcoreError(f"-p needs a bridge network: a container on {network.driver} network {network.name} "
                               "is reached on its own address on the LAN, not through the host")
        taken = self.store.ports()
        local_range = None
        for request in requests:
            fixed = request.fixed
            if request.host_ports is None:
                if local_range is None:
                    local_range = self.ports.local_range()
                meta = f"ports.last.{request.protocol}"
                last = self.store.meta(meta)
                candidates = ports.ephemeral_candidates(*local_range, int(last) if last else None)
                where = f"an ephemeral port ({local_range[0][0]}-{local_range[0][1]})"
            else:
                first, end = request.host_ports
                candidates = iter(range(first, end + 1))
                where = f"port {first}" if first == end else f"ports {first}-{end}"
            binding = self._free_port(container, network, request, candidates, taken, fixed)
            if binding is None:
                raise Conflict(f"no free host port for {ports.port_key(request.protocol, request.container_port)}"
                               f" of container {container.name} among {where}")
            if request.host_ports is None:
                self.store.set_meta(meta, str(binding.host_port))
            taken.append(binding)
            self.store.insert(binding)

    def _free_port(self, container: Container, network: Network, request: ports.PortRequest, candidates,
                   taken: list[PortBinding], fixed: bool) -> PortBinding | None:
        """The binding of ``request`` to the first of ``candidates`` free in ``taken`` and in the kernel, or
        None; a ``fixed`` port that is taken raises Conflict (by a container) or PortError (by a process)."""
        addresses = [request.host_ip] if request.host_ip else ["0.0.0.0", "::"] if network.subnet6 else ["0.0.0.0"]
        for port in candidates:
            other = ports.conflict(request.protocol, request.host_ip, port, taken)
            if other is not None:
                if fixed and other.container_id == container.id:  # plan_requests rules this out; never "by itself"
                    raise NetcoreError(f"-p {request.spec} collides with another -p of container {container.name} "
                                       f"on {request.protocol} host port {port}", exit_code=2)
                if fixed:
                    owner = "container " + (self.store.find_container_by_id(other.container_id) or container).name
                    raise Conflict(f"Bind for {_show_host(request.host_ip)}:{port} failed: port is already "
                                   f"allocated ({request.protocol}, published by {owner})")
                continue
            try:
                for address in addresses:
                    self.ports.check(HostPort(request.protocol, address, port), self._dnsd_addresses())
            except PortError:
                if fixed:
                    raise
                continue
            return PortBinding(container.id, request.protocol, request.container_port, request.host_ip, port,
                               request.requested)
        return None

    @staticmethod
    def _network_mode(net: str | None) -> tuple[str, str | None]:
        if net in (MODE_HOST, MODE_NONE):
            return net, None
        if net and net.startswith("container:"):
            ref = net.partition(":")[2]
            if not ref:
                raise NetcoreError("--net container:NAME needs the name or ID of a container")
            return MODE_CONTAINER, ref
        return MODE_BRIDGE, None

    def _generate_name(self) -> str:
        while True:
            name = f"{random.choice(_ADJECTIVES)}_{random.choice(_NAMES)}"
            if not self.store.find_container(name):
                return name

    def _plan_endpoint(self, container: Container, network: Network, aliases, ip: str | None) -> Endpoint:
        """Allocate an interface name, a veth name, addresses and a MAC; record the endpoint as creating."""
        if network.state != STATE_RUNNING:
            raise NetcoreError(f"network {network.name} is not ready")
        if not network.dns_enabled and aliases:
            raise NetcoreError("network-scoped aliases are supported only for user-defined networks")
        if not network.dns_enabled and ip:
            raise NetcoreError("user specified IP address is supported on user defined networks only")
        used_ifnames = {e.ifname for e in self.store.endpoints_of_container(container.id)}
        ifname = next(f"eth{i}" for i in range(len(used_ifnames) + 1) if f"eth{i}" not in used_ifnames)
        subnet = ipaddress.ip_network(network.subnet)
        taken = [*self.store.addresses_on_network(network.id), *network.reserved_addresses]
        address = ipam.allocate_address(subnet, ipaddress.ip_address(network.gateway), taken,
                                        ipaddress.ip_network(network.ip_range) if network.ip_range else None, ip)
        address6 = None
        if network.subnet6:
            address6 = ipam.allocate_address(ipaddress.ip_network(network.subnet6),
                                             ipaddress.ip_address(network.gateway6), taken)
        endpoint = Endpoint(id=secrets.token_hex(32), container_id=container.id, network_id=network.id,
                            ifname=ifname, host_ifname=f"veth{secrets.token_hex(4)[:7]}", mac=ipam.mac_for(address),
                            ipv4=str(address), ipv6=str(address6) if address6 else None,
                            aliases=tuple(dict.fromkeys(aliases)), state=STATE_CREATING)
        self.store.insert(endpoint)
        return endpoint

    def _build(self, record, build, undo) -> None:
        """Run the kernel step; on failure undo it (rows included) and re-raise; on success mark running."""
        try:
            build()
        except BaseException:
            undo()
            raise
        with self.store.transaction():
            self.store.set_state(record, STATE_RUNNING)
            if isinstance(record, Container):
                for endpoint in self.store.endpoints_of_container(record.id):
                    self.store.set_state(endpoint, STATE_RUNNING)

    def _build_container(self, container: Container, endpoints: list[Endpoint]) -> None:
        if container.mode in (MODE_BRIDGE, MODE_NONE):
            self.kernel.create_namespace(container.netns)
        for endpoint in endpoints:
            self._build_endpoint(container, endpoint)
        self._write_etc(container)

    def _build_endpoint(self, container: Container, endpoint: Endpoint) -> None:
        network = self.store.network(endpoint.network_id)
        drivers.get(network.driver).build_endpoint(self.kernel, network, container.netns, endpoint)
        self._configure_interface(container, endpoint, network)

    def _teardown_endpoint(self, endpoint: Endpoint) -> None:
        network = self.store.network(endpoint.network_id)
        container = self.store.find_container_by_id(endpoint.container_id)
        netns = container.netns if container else ""
        drivers.get(network.driver).teardown_endpoint(self.kernel, network, netns, endpoint)

    def _configure_interface(self, container: Container, endpoint: Endpoint, network: Network) -> None:
        self.kernel.configure_container_interface(
            container.netns, endpoint.ifname, endpoint.ipv4, ipam.prefixlen(network.subnet),
            None if network.internal else network.gateway, endpoint.ipv6, ipam.prefixlen(network.subnet6),
            None if network.internal else network.gateway6)

    def _write_etc(self, container: Container) -> None:
        """resolv.conf names the embedded DNS of each DNS network joined, else the container's own --dns, else
        (the default bridge, --net none) the host's name servers as Docker copies them (netcore.resolvconf:
        loopback ones left out, systemd-resolved's rule, Docker's defaults when none is left; in sandbox mode
        the gateway namespace's /etc/netns file first) with the host's search domains and options."""
        if container.mode not in (MODE_BRIDGE, MODE_NONE):
            return  # host and container: modes use the namespace's owner's files
        endpoints = self.store.endpoints_of_container(container.id)
        networks = [self.store.network(e.network_id) for e in endpoints]
        nameservers = [n.dns_addresses[0] for n in networks if n.dns_addresses]
        addresses = [a for e in endpoints for a in (e.ipv4, e.ipv6) if a]
        hosts = sandbox.hosts_file(container.hostname, addresses)
        if not nameservers:
            nameservers = [s for s in container.dns if _is_plain_address(s)]  # resolv.conf has no ports
        if nameservers:
            self.kernel.write_etc(container.netns, sandbox.resolv_conf(nameservers), hosts)
            return
        host = resolvconf.choose_source(self.kernel.read_text, self.namespace, sandbox.ETC_NETNS)
        copied = resolvconf.for_container(host, ipv6=any(e.ipv6 for e in endpoints))
        source = host.source or "no resolv.conf found"
        header = (f"# written by netcore: Docker's default name servers ({source} names none a container can use)"
                  if copied.defaulted else f"# written by netcore: the name servers of {source}, loopback ones left "
                  "out (Docker's rule)")
        self.kernel.write_etc(container.netns, sandbox.resolv_conf(list(copied.nameservers), copied.search,
                                                                   copied.options, header), hosts)

    def _drop_container(self, container: Container) -> list[Container]:
        """Tear down whatever exists of the container in the kernel, then its rows; return what was dropped.

        Containers sharing its namespace go first, whatever their state: their rows
        refer to this one's (containers.peer), and they cannot outlive the
        namespace. So no row is ever left pointing at a deleted one. Returns the
        dropped containers, dependents first, this one last.
        """
        dropped = []
        for dependent in removal_order(self.store.dependents(container.id)):
            dropped += self._drop_container(dependent)
        endpoints = self.store.endpoints_of_container(container.id)
        for endpoint in endpoints:
            self._teardown_endpoint(endpoint)
        if container.mode in (MODE_BRIDGE, MODE_NONE):
            self.kernel.delete_namespace(container.netns)
            self.kernel.remove_etc(container.netns)
        with self.store.transaction():
            for endpoint in endpoints:
                self.store.delete(endpoint)
            self.store.delete_ports(container)
            self.store.delete(container)
        return [*dropped, container]

    def sharing(self, container: Container) -> list[Container]:
        """Every container in ``container``'s namespace through --net container: (dependents of dependents too)."""
        found, pending = [], [container]
        while pending:
            for dependent in self.store.dependents(pending.pop().id):
                if dependent.id != container.id and all(dependent.id != f.id for f in found):
                    found.append(dependent)
                    pending.append(dependent)
        return found

    def remove_containers(self, refs: list[str], force: bool = False) -> list[Container]:
        """Remove the containers named by ``refs`` (any order), dependents before the namespace they share.

        Every ref is resolved first: an unknown one (NotFound) changes nothing. A
        container others share (--net container:NAME) is refused (Conflict) unless
        they are named too, or ``force`` removes them as well (Docker's rm -f).
        All victims are recorded as removing in one transaction, then torn down in
        ``removal_order``; a process killed in between leaves them for reconcile().
        A ref naming a container that this command's reconciliation removed (the rest of an
        ``rm`` that was killed) counts as removed. Returns the removed containers in the order
        they went, those reconciliation removed first.
        """
        with self.action():
            victims: dict[str, Container] = {}
            gone: list[Container] = []  # named, but reconciliation removed them just now: done
            for ref in refs:
                try:
                    container = self.store.container(ref)
                except NotFound:
                    found = self._just_reconciled(Container, ref)
                    if found is None:
                        raise
                    gone += [found] if found not in gone else []
                    continue
                victims.setdefault(container.id, container)
            for container in list(victims.values()):
                others = [d for d in self.sharing(container) if d.id not in victims]
                if others and not force:
                    names = ", ".join(sorted(d.name for d in others))
                    raise Conflict(f"container {container.name} shares its namespace with {names}: "
                                   "remove them first, or use -f to remove them too")
                victims.update((d.id, d) for d in others)
            ordered = removal_order(victims.values())
            self._mark_removing(ordered)
            removed: list[Container] = list(gone)
            for victim in ordered:
                if all(victim.id != r.id for r in removed):  # else it went with the namespace it shared
                    removed += self._drop_container(victim)
        return removed

    def _mark_removing(self, containers: list[Container]) -> None:
        with self.store.transaction():
            for container in containers:
                self.store.set_state(container, STATE_REMOVING)
                for endpoint in self.store.endpoints_of_container(container.id):
                    self.store.set_state(endpoint, STATE_REMOVING)

    # -- connect / disconnect -------------------------------------------------

    def connect(self, net_ref: str, container_ref: str, aliases: list[str] = (), ip: str | None = None) -> Endpoint:
        for alias in aliases:
            validate_name(alias, "alias")
        with self.action():
            with self.store.transaction():
                network = self.store.network(net_ref)
                container = self.store.container(container_ref)
                self._check_connectable(container)
                if any(e.network_id == network.id for e in self.store.endpoints_of_container(container.id)):
                    raise Conflict(f"container {container.name} is already connected to network {network.name}")
                endpoint = self._plan_endpoint(container, network, aliases, ip)

            def build():
                self._build_endpoint(container, endpoint)
                self._write_etc(container)

            def undo():
                self._teardown_endpoint(endpoint)
                with self.store.transaction():
                    self.store.delete(endpoint)
            self._build(endpoint, build, undo)
            self._confirm(network, lambda: self.disconnect(network.id, container.id),
                              f"container {container.name} not connected to network {network.name}")
            return replace(endpoint, state=STATE_RUNNING)

    @staticmethod
    def _check_connectable(container: Container) -> None:
        if container.mode != MODE_BRIDGE:
            how = {MODE_HOST: "the host network", MODE_NONE: "no network",
                   MODE_CONTAINER: "another container's network namespace"}[container.mode]
            raise Conflict(f"container {container.name} uses {how} (--net {container.mode}): "
                           "it cannot be connected to or disconnected from networks")

    def disconnect(self, net_ref: str, container_ref: str) -> Endpoint | None:
        """Remove ``container_ref``'s endpoint on ``net_ref``; Conflict if it has none. If this command's
        reconciliation removed that endpoint (a ``disconnect`` or ``connect`` killed part way), its
        container, or the network, there is nothing left to do: None, no error. Returns the endpoint."""
        with self.action():
            try:
                network = self.store.network(net_ref)
                container = self.store.container(container_ref)
            except NotFound:
                if self._just_reconciled(Network, net_ref) or self._just_reconciled(Container, container_ref):
                    return None
                raise
            self._check_connectable(container)
            endpoint = next((e for e in self.store.endpoints_of_container(container.id)
                             if e.network_id == network.id), None)
            if endpoint is None and any(isinstance(r, Endpoint) and (r.container_id, r.network_id) ==
                                        (container.id, network.id) for r in self.reconciled):
                return None
            if endpoint is None:
                raise Conflict(f"container {container.name} is not connected to network {network.name}")
            with self.store.transaction():
                self.store.set_state(endpoint, STATE_REMOVING)
            self._teardown_endpoint(endpoint)
            with self.store.transaction():
                self.store.delete(endpoint)
            for remaining in self.store.endpoints_of_container(container.id):  # a default route may have gone
                self._configure_interface(container, remaining, self.store.network(remaining.network_id))
            self._write_etc(container)
            return endpoint

    # -- reconciliation -------------------------------------------------------

    def reconcile(self, gateway_created: bool = False) -> list[str]:
        """Bring the kernel back in line with the store after a crash or a reboot; say what was done.

        netcore records before it builds and tears down before it deletes rows, so
        kernel leftovers exist only where the store holds rows in a transitional
        state. The full sweep of the kernel (O(containers)) runs only then, after a
        reboot, or when the gateway namespace had to be made anew.
        """
        notes = []
        networks, containers, endpoints = self.store.unsettled()
        unsettled = {c.id for c in containers}
        gone: set[str] = set()
        for container in removal_order(containers):  # containers before networks: endpoints refer to both
            if container.id in gone:
                continue
            for dropped in self._drop_container(container):
                gone.add(dropped.id)
                self.reconciled.append(dropped)
                if dropped.id in unsettled:
                    notes.append(f"removed half-{'created' if dropped.state == STATE_CREATING else 'removed'} "
                                 f"container {dropped.name} (namespace {dropped.netns})")
                else:
                    notes.append(f"removed container {dropped.name}: it shared the namespace of "
                                 f"half-removed container {container.name}")
        for endpoint in endpoints:
            if self.store.find_container_by_id(endpoint.container_id) is None:
                continue  # went with its container above
            self._teardown_endpoint(endpoint)
            with self.store.transaction():
                self.store.delete(endpoint)
            self.reconciled.append(endpoint)
            notes.append(f"removed half-{'connected' if endpoint.state == STATE_CREATING else 'disconnected'} "
                         f"endpoint {endpoint.host_ifname}")
        for network in networks:
            self._drop_network(network)
            self.reconciled.append(network)
            notes.append(f"removed half-{'created' if network.state == STATE_CREATING else 'removed'} "
                         f"network {network.name} (bridge {network.bridge})")
        boot = self.clock.boot_id()
        if notes or gateway_created or self.store.meta("boot_id") != boot:
            notes += self._reconcile_kernel()
            with self.store.transaction():
                self.store.set_meta("boot_id", boot)
        self.notes += notes
        return notes

    def _just_reconciled(self, kind: type, ref: str) -> Network | Container | None:
        """The network or container (``kind``) named by ``ref`` (name, full ID or ID prefix, as the store
        resolves them) that reconciliation removed in this process, else None: asked to remove it, the
        command has nothing left to do and succeeds (issue 23, item 7: ``rm X`` repeated after an ``rm``
        killed part way said "no such container" and failed a ``set -e`` script)."""
        hexadecimal = bool(ref) and all(c in "0123456789abcdef" for c in ref)
        return next((r for r in self.reconciled if isinstance(r, kind) and
                     (ref in (r.name, r.id) or (hexadecimal and r.id.startswith(ref)))), None)

    def _reconcile_kernel(self) -> list[str]:
        notes = []
        containers = self.store.containers()
        owned = {c.netns for c in containers}
        for namespace in self.kernel.list_namespaces():
            if namespace.startswith(self.ns_prefix) and namespace not in owned:
                self.kernel.delete_namespace(namespace)
                self.kernel.remove_etc(namespace)
                notes.append(f"removed leftover namespace {namespace}")
        networks = {n.id: n for n in self.store.networks()}
        links = self.kernel.links()
        for network in networks.values():
            if any(name not in links for name in drivers.get(network.driver).network_links(network)):
                try:
                    self._build_network(network)
                except NetcoreError as err:  # e.g. a macvlan parent that is gone: the other networks still work
                    notes.append(f"could not rebuild network {network.name}: {err}")
                    continue
                notes.append(f"recreated missing bridge {network.bridge} of network {network.name}")
        ports = {name for n in networks.values() for name in drivers.get(n.driver).ports(n, links)}
        known = {name for e in self.store.endpoints()
                 for name in drivers.get(networks[e.network_id].driver).endpoint_links(e)}
        for name in links:
            if name in ports and name not in known:
                self.kernel.delete_link(name)
                notes.append(f"removed leftover veth {name}")
        existing = set(self.kernel.list_namespaces())
        for container in containers:
            if container.mode in (MODE_BRIDGE, MODE_NONE) and container.netns not in existing:
                self.kernel.create_namespace(container.netns)
                for endpoint in self.store.endpoints_of_container(container.id):
                    self._build_endpoint(container, endpoint)
                self._write_etc(container)
                notes.append(f"rebuilt missing namespace of container {container.name}")
            elif container.mode == MODE_BRIDGE:
                # a veth whose gateway end is gone (the gateway namespace was deleted and made anew): its
                # container end may still hang on the old namespace's bridge, kept alive by a process there
                for endpoint in self.store.endpoints_of_container(container.id):
                    driver = drivers.get(networks[endpoint.network_id].driver)
                    if any(name not in links for name in driver.endpoint_links(endpoint)):
                        self.kernel.delete_container_link(container.netns, endpoint.ifname)
                        self._build_endpoint(container, endpoint)
                        notes.append(f"rebuilt missing interface {endpoint.ifname} of container {container.name}")
        return notes

    def purge(self) -> None:
        """Remove every container and network, stop dnsd, and in sandbox mode delete the gateway namespace.

        Keeps going past a failure (a kernel refusal, a store error), so every
        namespace it can delete goes, the gateway namespace last; then raises one
        NetcoreError naming what could not be removed. Containers go dependents
        first (``removal_order``); everything is recorded as removing first, so a
        purge killed midway is finished by the next command's reconciliation.
        """
        failures: list[str] = []

        def attempt(what: str, step) -> None:
            try:
                step()
            except Exception as err:  # noqa: BLE001  (purge reports every failure at the end)
                failures.append(f"{what}: {err}")

        with self._locked():
            attempt("stop dnsd", self.dnsd.stop)
            containers = removal_order(self.store.containers())
            networks = self.store.networks()

            def mark() -> None:
                with self.store.transaction():
                    for record in (*containers, *networks, *self.store.endpoints()):
                        self.store.set_state(record, STATE_REMOVING)
            attempt("record the removal", mark)
            gone: set[str] = set()
            for container in containers:
                if container.id not in gone:
                    attempt(f"container {container.name}",
                            lambda c=container: gone.update(d.id for d in self._drop_container(c)))
            for network in networks:
                attempt(f"network {network.name}", lambda n=network: self._drop_network(n))
            attempt("firewall", self.apply_firewall)
            attempt("port holder", self.ports.stop)
            for namespace in self.kernel.list_namespaces():
                if namespace.startswith(self.ns_prefix):
                    attempt(f"namespace {namespace}", lambda ns=namespace: (self.kernel.delete_namespace(ns),
                                                                             self.kernel.remove_etc(ns)))
            if self.namespace:
                self.kernel.close()
                attempt(f"gateway namespace {self.namespace}", lambda: self.kernel.delete_namespace(self.namespace))
        if failures:
            raise NetcoreError(f"purge removed what it could; not removed: {'; '.join(failures)}")

    # -- reads ------------------------------------------------------------------

    def exec_target(self, ref: str) -> str | None:
        """The network namespace a command of container ``ref`` runs in (None: the host's own, for a container
        of ``--net host`` in host mode); NetcoreError when the container is not running. Revives dnsd first
        (``revive_dnsd``), so the command's lookups are answered. netcore.sandbox.run_in runs it there."""
        container = self.store.container(ref)
        if container.state != STATE_RUNNING:
            raise NetcoreError(f"container {container.name} is not running")
        self.revive_dnsd()
        return container.netns or None
