"""Recovery: the kernel brought back in line with the store after a crash or a reboot, and ``purge``.

netcore records before it builds and tears down before it deletes rows (netcore.engine.build), so kernel
leftovers exist only where the store holds rows in a transitional state, and only an action killed part
way leaves those. Every action reconciles first, under the state dir's lock: the rows are an orphan's.
"""

from __future__ import annotations

from netcore import network as drivers
from netcore.engine.build import Builder
from netcore.engine.context import Context
from netcore.engine.follow import Follower
from netcore.engine.lock import StateLock
from netcore.errors import NetcoreError
from netcore.kernel import sandbox
from netcore.model import MODE_BRIDGE, MODE_NONE, STATE_CREATING, STATE_REMOVING, Container, Network, removal_order


class Recovery:
    """Reconciliation and purge of ``ctx``'s state dir."""

    def __init__(self, ctx: Context, builder: Builder, follower: Follower, lock: StateLock):
        self.ctx = ctx
        self.builder = builder
        self.follower = follower
        self.lock = lock

    def reconcile(self, gateway_created: bool = False) -> list[str]:
        """Finish what an interrupted action left (rows ``creating`` or ``removing``: torn down, kernel first,
        then rows), and after that, a reboot (the boot ID changed) or a gateway namespace made anew, sweep the
        kernel against the store (``reconcile_kernel``, O(containers)). Returns the notes, which also go to
        the report; what it removed goes to the report's ``reconciled``."""
        ctx, builder = self.ctx, self.builder
        store, report = ctx.store, ctx.report
        notes = []
        networks, containers, endpoints = store.unsettled()
        unsettled = {c.id for c in containers}
        gone: set[str] = set()
        for container in removal_order(containers):  # containers before networks: endpoints refer to both
            if container.id in gone:
                continue
            for dropped in builder.drop_container(container):
                gone.add(dropped.id)
                report.reconciled.append(dropped)
                if dropped.id in unsettled:
                    notes.append(f"removed half-{'created' if dropped.state == STATE_CREATING else 'removed'} "
                                 f"container {dropped.name} (namespace {dropped.netns})")
                else:
                    notes.append(f"removed container {dropped.name}: it shared the namespace of "
                                 f"half-removed container {container.name}")
        for endpoint in endpoints:
            if store.find_container_by_id(endpoint.container_id) is None:
                continue  # went with its container above
            builder.drop_endpoint(endpoint)
            report.reconciled.append(endpoint)
            notes.append(f"removed half-{'connected' if endpoint.state == STATE_CREATING else 'disconnected'} "
                         f"endpoint {endpoint.host_ifname}")
        for network in networks:
            builder.drop_network(network)
            report.reconciled.append(network)
            notes.append(f"removed half-{'created' if network.state == STATE_CREATING else 'removed'} "
                         f"network {network.name} (bridge {network.bridge})")
        boot = ctx.clock.boot_id()
        if notes or gateway_created or store.meta("boot_id") != boot:
            notes += self.reconcile_kernel()
            with store.transaction():
                store.set_meta("boot_id", boot)
        report.notes += notes
        return notes

    def just_reconciled(self, kind: type, ref: str) -> Network | Container | None:
        """The network or container (``kind``) named by ``ref`` (name, full ID or ID prefix, as the store
        resolves them) that reconciliation removed for this command, else None: asked to remove it, the
        command has nothing left to do and succeeds (issue 23, item 7: ``rm X`` repeated after an ``rm``
        killed part way said "no such container" and failed a ``set -e`` script)."""
        hexadecimal = bool(ref) and all(c in "0123456789abcdef" for c in ref)
        return next((r for r in self.ctx.report.reconciled if isinstance(r, kind) and
                     (ref in (r.name, r.id) or (hexadecimal and r.id.startswith(ref)))), None)

    def reconcile_kernel(self) -> list[str]:
        """The full sweep: leftover namespaces and /etc/netns entries with netcore's prefix removed (the entries
        outlive a reboot, and a power cut can lose the rows of an action's last containers, Store.deferred_sync);
        missing networks, namespaces and endpoints rebuilt; leftover links of netcore's networks (which links
        are a network's, an endpoint's or a network's ports, its driver says) deleted. Returns the notes."""
        ctx, builder = self.ctx, self.builder
        store, kernel = ctx.store, ctx.kernel
        notes = []
        containers = store.containers()
        owned = {c.netns for c in containers}
        for namespace in kernel.list_namespaces():
            if namespace.startswith(ctx.ns_prefix) and namespace not in owned:
                kernel.delete_namespace(namespace)
                kernel.remove_etc(namespace)
                notes.append(f"removed leftover namespace {namespace}")
        for namespace in kernel.list_etc():  # on disk, so a reboot keeps those whose rows a power cut lost
            if namespace.startswith(ctx.ns_prefix) and namespace not in owned:
                kernel.remove_etc(namespace)
                notes.append(f"removed leftover {sandbox.etc_dir(namespace)}")
        networks = {n.id: n for n in store.networks()}
        links = kernel.links()
        for network in networks.values():
            if any(name not in links for name in drivers.get(network.driver).network_links(network)):
                try:
                    builder.build_network(network)
                except NetcoreError as err:  # e.g. a macvlan parent that is gone: the other networks still work
                    notes.append(f"could not rebuild network {network.name}: {err}")
                    continue
                notes.append(f"recreated missing bridge {network.bridge} of network {network.name}")
        ports = {name for n in networks.values() for name in drivers.get(n.driver).ports(n, links)}
        known = {name for e in store.endpoints()
                 for name in drivers.get(networks[e.network_id].driver).endpoint_links(e)}
        for name in links:
            if name in ports and name not in known:
                kernel.delete_link(name)
                notes.append(f"removed leftover veth {name}")
        existing = set(kernel.list_namespaces())
        for container in containers:
            if container.mode in (MODE_BRIDGE, MODE_NONE) and container.netns not in existing:
                kernel.create_namespace(container.netns)
                for endpoint in store.endpoints_of_container(container.id):
                    builder.build_endpoint(container, endpoint)
                builder.write_etc(container)
                notes.append(f"rebuilt missing namespace of container {container.name}")
            elif container.mode == MODE_BRIDGE:
                # a veth whose gateway end is gone (the gateway namespace was deleted and made anew): its
                # container end may still hang on the old namespace's bridge, kept alive by a process there
                for endpoint in store.endpoints_of_container(container.id):
                    driver = drivers.get(networks[endpoint.network_id].driver)
                    if any(name not in links for name in driver.endpoint_links(endpoint)):
                        kernel.delete_container_link(container.netns, endpoint.ifname)
                        builder.build_endpoint(container, endpoint)
                        notes.append(f"rebuilt missing interface {endpoint.ifname} of container {container.name}")
        return notes

    def purge(self) -> None:
        """Remove every container and network, stop dnsd, and in sandbox mode delete the gateway namespace.

        Keeps going past a failure (a kernel refusal, a store error), so every namespace it can delete goes,
        the gateway namespace last; then raises one NetcoreError naming what could not be removed. Containers
        go dependents first (``removal_order``); everything is recorded as removing first, so a purge killed
        midway is finished by the next command's reconciliation.
        """
        ctx, builder = self.ctx, self.builder
        store, kernel = ctx.store, ctx.kernel
        failures: list[str] = []

        def attempt(what: str, step) -> None:
            try:
                step()
            except Exception as err:  # noqa: BLE001  (purge reports every failure at the end)
                failures.append(f"{what}: {err}")

        def firewall() -> None:
            try:
                self.follower.apply_firewall()
            except NetcoreError as err:
                raise NetcoreError(f"firewall not applied: {err}") from None

        with self.lock.held():
            attempt("stop dnsd", ctx.dnsd.stop)
            containers = removal_order(store.containers())
            attempt("stop the containers' processes", lambda: builder.processes.stop(containers))
            networks = store.networks()

            def mark() -> None:
                with store.transaction():
                    for record in (*containers, *networks, *store.endpoints()):
                        store.set_state(record, STATE_REMOVING)
            attempt("record the removal", mark)
            gone: set[str] = set()
            for container in containers:
                if container.id not in gone:
                    attempt(f"container {container.name}",
                            lambda c=container: gone.update(d.id for d in builder.drop_container(c)))
            for network in networks:
                attempt(f"network {network.name}", lambda n=network: builder.drop_network(n))
            attempt("firewall", firewall)
            attempt("port holder", ctx.ports.stop)
            for namespace in kernel.list_namespaces():
                if namespace.startswith(ctx.ns_prefix):
                    attempt(f"namespace {namespace}", lambda ns=namespace: (kernel.delete_namespace(ns),
                                                                             kernel.remove_etc(ns)))
            if ctx.namespace:
                kernel.close()
                attempt(f"gateway namespace {ctx.namespace}", lambda: kernel.delete_namespace(ctx.namespace))
        if failures:
            raise NetcoreError(f"purge removed what it could; not removed: {'; '.join(failures)}")
