"""The action frame and the verbs: one call per user action, on one state dir and one gateway namespace.

Every mutating action runs in ``Engine.action()``: under the state dir's lock (netcore.engine.lock), after
reconciling what an interrupted action left (netcore.engine.recovery), in three steps: (1) a transaction
records the new objects ``creating`` (or marks old ones ``removing``), rows planned by netcore.engine
.planning; (2) the kernel objects are built or torn down (netcore.engine.build); (3) a transaction marks
them ``running`` (or deletes the rows). Then what follows from the store is applied: dnsd synced, the
published ports held, the firewall (netcore.engine.follow). A process killed between the steps leaves rows
in a transitional state; the lock is released only when its holder dies, so the next action that takes it
knows they are orphans. docs/ARCHITECTURE.md maps the modules around it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace

from netcore import network as drivers, ports
from netcore.cluster.member import MemberStatus
from netcore.cluster.membership import Membership
from netcore.dnsd_protocol.control import DnsdControl, dnsd_options, write_dnsd_options
from netcore.engine.build import Builder
from netcore.engine.cluster import ClusterOptions
from netcore.engine.context import Context, Report, Supervisor
from netcore.engine.follow import Follower
from netcore.engine.lock import StateLock
from netcore.engine.overlay import Overlays, network_of
from netcore.engine.planning import Planner, shown
from netcore.engine.processes import STOP_GRACE, MainProcesses
from netcore.engine.recovery import Recovery
from netcore.errors import Conflict, NetcoreError, NotFound
from netcore.firewall import Firewall, NoFirewall
from netcore.kernel import Kernel
from netcore.model import (
    DEFAULT_BRIDGE,
    MODE_BRIDGE,
    MODE_CONTAINER,
    MODE_HOST,
    MODE_NONE,
    STATE_RUNNING,
    Container,
    Endpoint,
    Network,
    removal_order,
)
from netcore.network.overlay import NAME as OVERLAY
from netcore.ports.holder import HostPorts
from netcore.requests import ConnectSpec, ContainerSpec, NetworkSpec, validate_name
from netcore.services.host_resolver import HostResolver
from netcore.store import Store
from netcore.system.clock import Clock, SystemClock


class Engine:
    """netcore's actions on one state dir (the store) and one gateway namespace (None: the host's).

    What it acts on is given, with the real ones as defaults: ``kernel`` (netcore.kernel.Kernel:
    namespaces, links, addresses, /etc/netns files; netcore.kernel.linux_kernel.LinuxKernel), ``dnsd`` (a
    DnsdControl: sync/status/stop), ``clock`` (creation times, the boot ID), ``firewall``
    (netcore.firewall.Firewall: NoFirewall by default; the agent passes netcore.firewall.apply
    .NftablesFirewall), ``ports`` (netcore.ports.holder.HostPorts: binds and holds published host
    ports), ``processes`` (the Supervisor of containers' main processes: netcored passes
    netcore.agent.processes.ProcessSupervisor; without one no main process can be started) and ``cluster``
    (what its cluster member is made of: netcore.engine.cluster.ClusterOptions; None: etcd, the kernel's
    VXLAN devices, dnsd). Unit tests pass in-memory ones. Checks no privilege (the CLI does); NetcoreError
    for a bad namespace name. A state dir that joined a cluster gets its member with ``start_cluster``
    (netcored calls it when it opens the engine).
    """

    def __init__(self, state_dir: str, namespace: str | None = None, *, kernel: Kernel | None = None,
                 dnsd: DnsdControl | None = None, clock: Clock | None = None, firewall: Firewall | None = None,
                 ports: HostPorts | None = None, processes: Supervisor | None = None,
                 cluster: ClusterOptions | None = None):
        if namespace is not None:
            validate_name(namespace, "gateway namespace")
        if kernel is None:
            from netcore.kernel.linux_kernel import LinuxKernel  # pyroute2: only an engine on the real kernel

            kernel = LinuxKernel(namespace)
        self.ctx = Context(
            state_dir=state_dir, namespace=namespace, store=Store.open(state_dir), kernel=kernel,
            dnsd=dnsd if dnsd is not None else DnsdControl(state_dir, namespace),
            ports=ports if ports is not None else HostPorts(state_dir, namespace),
            firewall=firewall if firewall is not None else NoFirewall(),
            clock=clock if clock is not None else SystemClock(),
            host_resolver=HostResolver(state_dir, namespace))
        if processes is not None:
            self.ctx.processes = processes
        self.lock = StateLock(state_dir)
        self.main = MainProcesses(self.ctx)
        self.builder = Builder(self.ctx, self.main)
        self.follower = Follower(self.ctx, self.lock)
        self.planner = Planner(self.ctx, self.follower.dnsd_addresses)
        self.recovery = Recovery(self.ctx, self.builder, self.follower, self.lock)
        self.overlays = Overlays(self.ctx, self.builder, self.planner.taken_subnets, cluster)
        self.planner.overlays = self.overlays
        self.builder.dropped = self.overlays.dropped
        self._in_action = False

    # what callers read of the context (the CLI's handlers, tests)
    state_dir = property(lambda self: self.ctx.state_dir)
    namespace = property(lambda self: self.ctx.namespace)
    store = property(lambda self: self.ctx.store)
    kernel = property(lambda self: self.ctx.kernel)
    dnsd = property(lambda self: self.ctx.dnsd)
    ports = property(lambda self: self.ctx.ports)
    host_resolver = property(lambda self: self.ctx.host_resolver)
    processes = property(lambda self: self.ctx.processes)
    report: Report = property(lambda self: self.ctx.report)
    notes = property(lambda self: self.ctx.report.notes)
    warnings = property(lambda self: self.ctx.report.warnings)
    notices = property(lambda self: self.ctx.report.notices)

    def close(self) -> None:
        try:
            self.overlays.close()
        finally:
            self.builder.close()
            self.ctx.kernel.close()
            self.ctx.store.close()

    def begin_request(self) -> None:
        """Start a command on a long-lived engine (netcored's): what the last one reported is forgotten; a
        kernel socket left in a gateway namespace that is no longer the live one is let go (opened again, in
        the live one, when next needed); when that namespace was made anew, or somebody changed nftables
        there (netcore.firewall.monitor), what follows from the store (ports, firewall) is derived and
        checked again at the next apply; and the main processes that ended since are recorded as exited."""
        self.ctx.report.clear()
        if self.ctx.kernel.revalidate() | self.ctx.firewall.changed_outside():
            self.follower.firewall_generation = None
        self.main.refresh()

    def firewall_settled(self) -> bool:
        """Whether what follows from the store now was applied and nothing changed it since: a read then
        needs no look at the kernel (``assert_firewall``)."""
        return self.follower.firewall_generation == self.ctx.store.generation()

    # -- the frame of every action ---------------------------------------------------------------------------

    @contextmanager
    def action(self, force_firewall: bool = False) -> Iterator[None]:
        """Exclusive across processes; reconciles leftovers first, then, once the action succeeded, applies
        what follows (netcore.engine.follow: dnsd, ports, firewall, the host's resolver; ``force_firewall``:
        the firewall replaced whatever the live rules look like).

        Re-entrant: actions nested in one (a topology's ``up``) share its lock, its reconciliation and what
        follows it. Its writes to the store reach the disk together when it ends (Store.deferred_sync), not one
        commit at a time: what a command changed is durable when it returns, as before.
        """
        if self._in_action:
            yield
            return
        self.ctx.firewall.check_ready()  # nft missing: one line, before anything is changed
        with self.lock.held(), self.store.deferred_sync():
            self._in_action = True
            try:
                created = self.ctx.kernel.ensure()
                notes = self.recovery.reconcile(gateway_created=created)
                if self.overlays.joined:
                    self.overlays.sweep()
                    if notes or created:
                        self.overlays.reprogram()  # devices rebuilt: their entries are gone
                self.follower.replace_stale_dnsd()
                self.follower.restart_if_options_changed()
                self._ensure_default_bridge()
                yield
                self.follower.after_action(force_firewall)
            finally:
                self._in_action = False
                self.overlays.local_changed()

    def action_in_progress(self) -> bool:
        """Whether another netcore process holds the state dir's lock now (an action runs): rows left
        ``creating`` or ``removing`` while none does are an interrupted action's (``ps`` says so)."""
        return self.lock.busy()

    def reconcile(self, gateway_created: bool = False) -> list[str]:
        """netcore.engine.recovery.Recovery.reconcile."""
        return self.recovery.reconcile(gateway_created)

    def purge(self) -> None:
        """netcore.engine.recovery.Recovery.purge; then this host leaves its cluster, if it joined one (its
        containers were withdrawn on the way; the store told if it answers, else its keys go with its lease)."""
        self.recovery.purge()
        if self.overlays.joined:
            with self.lock.held():
                self.overlays.leave(force=True)

    def reload_firewall(self) -> None:
        """``netcore firewall-reload``: apply the whole firewall again, whatever the live rules look like."""
        with self.action(force_firewall=True):
            pass

    def assert_firewall(self) -> None:
        """netcore.engine.follow.Follower.assert_firewall: for commands that change nothing."""
        self.follower.assert_firewall()

    def revive_dnsd(self) -> None:
        """Restart a dnsd that should run and is not serving, or runs with other options than
        ``STATE_DIR/dnsd.options`` holds (Follower.dnsd_needs_restart), so the next lookup is answered as
        configured; a dnsd killed is restarted by its supervisor. Every command calls it, reads too (issue
        23, item 6). It also keeps ``dnsd.log`` bounded."""
        self.ctx.dnsd.rotate_log()
        if self.follower.dnsd_needs_restart():
            with self.action():
                pass  # action() rebuilds the gateway namespace, replaces a stale dnsd and syncs (starting dnsd)

    def set_dnsd_options(self, words: list[str]) -> list[str]:
        """``netcore dns-options set WORDS`` (``reset``: no words): write ``STATE_DIR/dnsd.options`` and restart
        the managed dnsd with them, if one should run. If dnsd refuses them (it exits at start), the old file
        is put back, dnsd started again with it, and NetcoreError names dnsd's reason: the options are never
        left broken. Returns the words now in force."""
        state_dir = self.ctx.state_dir
        with self.lock.held():
            old = dnsd_options(state_dir)
            write_dnsd_options(state_dir, words)
        notices = list(self.notices)
        try:
            with self.action():
                pass  # the action restarts a dnsd whose options differ, and its sync starts one that should run
        except NetcoreError as err:
            with self.lock.held():
                write_dnsd_options(state_dir, old)
            with suppress(NetcoreError), self.action():
                pass
            raise NetcoreError(f"dnsd options not changed: {err}") from None
        finally:
            self.notices[:] = notices  # the restart is this command's own doing: its output says what is in force
        return dnsd_options(state_dir)

    # -- networks --------------------------------------------------------------------------------------------

    def create_network(self, spec: NetworkSpec) -> Network:
        """``network create``: ``spec`` is checked (NetworkSpec.check) and its options by its driver
        (netcore.network), then planned, recorded, built and confirmed (dnsd listens on its gateway, the
        firewall takes it) or taken back. NetcoreError, one line, nothing changed, on any refusal."""
        spec = spec.check()
        driver = drivers.get(spec.driver)
        options = driver.validate(spec)
        network_id = secrets.token_hex(32)
        if driver.name == OVERLAY:
            with self.action():
                return self.overlays.create(spec, options)
        with self.action():
            with self.store.transaction():
                network = self.planner.plan_network(spec, options, network_id)
                self.store.insert(network)
            self.builder.build(network, lambda: self.builder.build_network(network),
                               lambda: self.builder.drop_network(network))
            network = replace(network, state=STATE_RUNNING)
            self.follower.confirm(network, lambda: self.builder.teardown(
                [network], lambda: self.builder.drop_network(network)), f"network {spec.name} not created")
            return network

    def remove_network(self, ref: str) -> Network:
        """Remove network ``ref``; Conflict for the default bridge or while containers are attached (named).
        A network this command's reconciliation removed (a ``network rm`` killed part way) counts as
        removed. Returns the network."""
        with self.action():
            try:
                network = self.store.network(ref)
            except NotFound:
                found = self.recovery.just_reconciled(Network, ref)
                if found is None:
                    if self.overlays.find(ref) is not None:
                        return self.overlays.remove(ref)
                    raise
                return found
            if network.driver == OVERLAY:
                return self.overlays.remove(network.id)
            if network.name == DEFAULT_BRIDGE:
                raise Conflict(f"{DEFAULT_BRIDGE} is a pre-defined network and cannot be removed")
            attached = self.store.endpoints_on_network(network.id)
            if attached:
                names = sorted(self.store.container(e.container_id).name for e in attached)
                raise Conflict(f"network {network.name} has active endpoints: {', '.join(names)}")
            self.builder.teardown([network], lambda: self.builder.drop_network(network))
            return network

    def _ensure_default_bridge(self) -> None:
        if self.store.find_network(DEFAULT_BRIDGE):
            return
        network = self.planner.plan_default_bridge()
        with self.store.transaction():
            self.store.insert(network)
        self.builder.build(network, lambda: self.builder.build_network(network),
                           lambda: self.builder.drop_network(network))

    def default_bridge_id(self) -> str:
        """The default bridge's 64-hex ID: drawn once per state dir."""
        return self.planner.default_bridge_id()

    def networks_to_show(self) -> list[Network]:
        """What ``network ls`` lists: the stored networks, with the default ``bridge`` before the first
        mutating command has built it (the README promises it from the first use: issue 23, item 5).
        A read: no lock is taken and nothing is built; the bridge shown is the one the next action builds,
        with the same ID."""
        networks = [*self.store.networks(), *self.overlays.shown()]
        if any(n.name == DEFAULT_BRIDGE for n in networks):
            return networks
        return [shown(self.planner.plan_default_bridge()), *networks]

    def network_to_show(self, ref: str) -> Network:
        """The network ``ref`` names (as ``Store.network`` resolves it), the default ``bridge`` included before
        it is built (``networks_to_show``); NotFound as the store raises it."""
        try:
            return self.store.network(ref)
        except NotFound:
            record = self.overlays.find(ref)
            if record is not None:
                return network_of(record)
            planned = next((n for n in self.networks_to_show() if n.name == DEFAULT_BRIDGE), None)
            hexadecimal = bool(ref) and all(c in "0123456789abcdef" for c in ref)
            if planned is not None and (ref in (planned.name, planned.id) or
                                        (hexadecimal and planned.id.startswith(ref))):
                return planned
            raise

    # -- containers ------------------------------------------------------------------------------------------

    def run(self, spec: ContainerSpec, start: bool = True) -> Container:
        """``run``: container ``spec`` (checked: ContainerSpec.check) on its networks (none given: the default
        bridge; or ``--net host|none|container:NAME``), with its published ports. NetcoreError (one line,
        nothing changed) for a bad or taken name, address or host port (``Bind for 0.0.0.0:8080 failed: port is
        already allocated ...``), two ``-p`` of it that collide (exit 2; overlapping ones that agree are
        merged, netcore.ports.plan_requests), or ``-p`` without a network that can be reached. A ``command``
        is recorded as the container's main process and started once the container is built (netcore.engine
        .processes.MainProcesses.start: a failure to start it leaves the container, as Docker does), unless
        ``start`` is False (``start`` does it later: Compose's create, then start)."""
        spec = spec.check()
        try:
            requests = ports.plan_requests(spec.publish)  # two -p of this run that collide: one line, exit 2
        except ports.PublishError as err:
            raise NetcoreError(str(err), exit_code=2) from None
        container_id = secrets.token_hex(32)
        with self.action():
            for attachment in spec.attachments:
                self.overlays.ensure_local(attachment.network)  # an overlay network built here first, if need be
            with self.overlays.claims():
                with self.store.transaction():
                    container, endpoints = self.planner.plan_container(spec, container_id, requests)
                self.builder.build(container, lambda: self.builder.build_container(container, endpoints),
                                   lambda: self.builder.drop_container(container))
                container = replace(container, state=STATE_RUNNING)

                def undo():
                    self.builder.teardown([container], lambda: self.builder.drop_container(container))
                for endpoint in endpoints:
                    self.follower.confirm(self.store.network(endpoint.network_id), undo,
                                          f"container {container.name} not created", container.id)
            self.overlays.publish(container, endpoints)
        if spec.command and start:
            self.main.start(container)  # a failure leaves the container, Created, as Docker does
        return container

    def sharing(self, container: Container) -> list[Container]:
        """Every container in ``container``'s namespace through --net container: (dependents of dependents too)."""
        found, pending = [], [container]
        while pending:
            for dependent in self.store.dependents(pending.pop().id):
                if dependent.id != container.id and all(dependent.id != f.id for f in found):
                    found.append(dependent)
                    pending.append(dependent)
        return found

    def remove_containers(self, refs: list[str], force: bool = False, grace: float = STOP_GRACE) -> list[Container]:
        """Remove the containers named by ``refs`` (any order), dependents before the namespace they share.

        Every ref is resolved first: an unknown one (NotFound) changes nothing. A container others share
        (--net container:NAME) is refused (Conflict) unless they are named too, or ``force`` removes them as
        well (Docker's rm -f). All victims are marked removing in one transaction, then torn down in
        ``removal_order``; a process killed in between leaves them for reconciliation. A running container
        (its main process, or any process in its own namespace) is refused (Conflict) unless ``force``
        stops its processes first (SIGTERM, SIGKILL after ``grace`` seconds: MainProcesses.stop). A ref naming a
        container this command's reconciliation removed (the rest of an ``rm`` that was killed) counts as
        removed. Returns the removed containers in the order they went, those reconciliation removed first.
        """
        with self.action():
            victims: dict[str, Container] = {}
            gone: list[Container] = []  # named, but reconciliation removed them just now: done
            for ref in refs:
                try:
                    container = self.store.container(ref)
                except NotFound:
                    found = self.recovery.just_reconciled(Container, ref)
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
            if force:
                self.main.stop(ordered, grace)
            else:
                self.main.check_removable(ordered)
            removed: list[Container] = list(gone)
            self.builder.teardown(ordered, lambda: removed.extend(self.builder.drop_containers(ordered)))
        return removed

    # -- connect / disconnect --------------------------------------------------------------------------------

    def connect(self, spec: ConnectSpec) -> Endpoint:
        """``network connect``: ``spec``'s container gets an interface on its network (``ethN``, the next free),
        with its aliases and fixed address; confirmed as ``run`` is, or taken back."""
        spec = spec.check()
        with self.action():
            self._check_connectable(self.store.container(spec.container))
            self.overlays.ensure_local(spec.attachment.network)
            with self.overlays.claims():
                with self.store.transaction():
                    network = self.store.network(spec.attachment.network)
                    container = self.store.container(spec.container)
                    self._check_connectable(container)
                    if any(e.network_id == network.id for e in self.store.endpoints_of_container(container.id)):
                        raise Conflict(f"container {container.name} is already connected to network {network.name}")
                    endpoint = self.planner.plan_endpoint(container, network, spec.attachment)

                def build():
                    self.builder.build_endpoint(container, endpoint)
                    self.builder.write_etc(container)

                self.builder.build(endpoint, build, lambda: self.builder.drop_endpoint(endpoint))
                self.follower.confirm(network, lambda: self.disconnect(network.id, container.id),
                                      f"container {container.name} not connected to network {network.name}")
            endpoint = replace(endpoint, state=STATE_RUNNING)
            self.overlays.publish(container, [endpoint])
            return endpoint

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
                if (self.recovery.just_reconciled(Network, net_ref)
                        or self.recovery.just_reconciled(Container, container_ref)):
                    return None
                raise
            self._check_connectable(container)
            endpoint = next((e for e in self.store.endpoints_of_container(container.id)
                             if e.network_id == network.id), None)
            if endpoint is None and any(isinstance(r, Endpoint) and (r.container_id, r.network_id) ==
                                        (container.id, network.id) for r in self.report.reconciled):
                return None
            if endpoint is None:
                raise Conflict(f"container {container.name} is not connected to network {network.name}")
            self.builder.teardown([endpoint], lambda: self.builder.drop_endpoint(endpoint))
            for remaining in self.store.endpoints_of_container(container.id):  # a default route may have gone
                self.builder.configure_interface(container, remaining, self.store.network(remaining.network_id))
            self.builder.write_etc(container)
            return endpoint

    # -- main processes --------------------------------------------------------------------------------------

    def start(self, refs: list[str]) -> list[Container]:
        """``start``: each container's main process, unless it runs (MainProcesses.start); NotFound for an
        unknown ref before anything starts. Returns the containers."""
        with self.lock.held():
            containers = [self.store.container(ref) for ref in refs]
            for container in containers:
                self.main.start(container)
        return containers

    def stop(self, refs: list[str], grace: float = STOP_GRACE) -> list[Container]:
        """``stop``: every process of the containers (SIGTERM, SIGKILL after ``grace`` seconds), their exits
        recorded; a container that runs nothing is stopped already. Returns the containers."""
        with self.lock.held():
            containers = [self.store.container(ref) for ref in refs]
            self.main.stop(containers, grace)
        return containers

    def restart(self, refs: list[str], grace: float = STOP_GRACE) -> list[Container]:
        """``restart``: ``stop``, then ``start`` for those with a main process."""
        containers = self.stop(refs, grace)
        with self.lock.held():
            for container in containers:
                if self.store.process(container.id) is not None:
                    self.main.start(container)
        return containers

    # -- reads -----------------------------------------------------------------------------------------------

    def exec_target(self, ref: str) -> str | None:
        """The network namespace a command of container ``ref`` runs in (None: the host's own, for a container
        of ``--net host`` in host mode); NetcoreError when the container is not running. Revives dnsd first
        (``revive_dnsd``), so the command's lookups are answered. netcore.kernel.sandbox.run_in runs it."""
        container = self.store.container(ref)
        if container.state != STATE_RUNNING:
            raise NetcoreError(f"container {container.name} is not running")
        self.revive_dnsd()
        return container.netns or None

    # -- the cluster (issue 27) ------------------------------------------------------------------------------

    def start_cluster(self) -> None:
        """Start this state dir's cluster member if it joined a cluster (netcored, when it opens the engine);
        the member registers in the background, retried while the store is down. NetcoreError for a
        membership file that cannot be read."""
        self.overlays.start()

    def join_cluster(self, store: str, address: str, name: str | None = None,
                     lease_ttl: int = 15) -> tuple[Membership, str]:
        """``cluster join`` (netcore.engine.overlay.Overlays.join): (the membership, the store's version)."""
        with self.action():
            return self.overlays.join(store, address, name, lease_ttl)

    def leave_cluster(self, force: bool = False) -> Membership:
        """``cluster leave`` (netcore.engine.overlay.Overlays.leave)."""
        with self.action():
            return self.overlays.leave(force)

    def cluster_status(self) -> MemberStatus | None:
        """The member's view of the cluster (``cluster ls``); None if this host never joined one."""
        return self.overlays.status()

    def network_peers(self, network: Network) -> list[tuple[str, str]] | None:
        """Docker's ``Peers`` of an overlay network, (host, address) each; None for another network."""
        return self.overlays.peers(network)
