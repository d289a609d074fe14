"""What follows every action: dnsd synced, the published host ports held, the firewall applied, the host's
resolver pointed at dnsd (opt-in); and what a command that adds to a network must see follow, or be
taken back (``confirm``).

All of it is derived from the store, never part of an action's rows: a failure here leaves the action
recorded and built, and the next command derives and applies everything again.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress

from netcore.dnsd_protocol import MANAGED
from netcore.engine.context import Context
from netcore.engine.lock import StateLock
from netcore.errors import NetcoreError
from netcore.firewall import desired_state as desired_firewall
from netcore.model import Network
from netcore.ports.holder import PortError


class Follower:
    """Derives and applies what follows from ``ctx``'s store."""

    def __init__(self, ctx: Context, lock: StateLock):
        self.ctx = ctx
        self.lock = lock
        self.firewall_generation: int | None = None  # the store generation whose firewall was applied last
        # what this action has looked at already (its frame calls replace_stale_dnsd first, which forgets it):
        # dnsd's status as replace_stale_dnsd found it, for restart_if_options_changed right after it; and the
        # sync of a confirm: the store generation dnsd was synced to, the addresses it could not listen on and
        # those it listens on, for the confirms and the after_action that follow in the same action
        self._status: tuple[int, str] | None = None
        self._synced: tuple[int, dict[str, str], frozenset[str]] | None = None

    # -- dnsd -------------------------------------------------------------------------------------------------

    def sync_dns(self) -> dict[str, str]:
        """Sync dnsd (started if needed) or stop it when no network needs it.

        Returns {gateway address: why dnsd cannot listen there}, empty when every listener is up."""
        if any(n.dns_enabled for n in self.ctx.store.networks()):
            return self.ctx.dnsd.sync()
        self.ctx.dnsd.stop()
        return {}

    def warn_dns_down(self, down: dict[str, str]) -> None:
        """Say, after any action, which networks dnsd cannot serve (it retries every second by itself)."""
        for network in self.ctx.store.networks() if down else ():
            reasons = [down[a] for a in network.dns_addresses if a in down]
            if reasons:
                self.ctx.report.warnings.append(f"network {network.name} has no DNS: dnsd {'; '.join(reasons)}")

    def dnsd_addresses(self) -> frozenset[str]:
        """Where dnsd listens (every network's ``dns_addresses``): the sockets a port published on dnsd's
        port on every address shares that port with (netcore.ports.holder.bind, issue 23 item 3)."""
        return frozenset(address for network in self.ctx.store.networks() for address in network.dns_addresses)

    def dnsd_is_stale(self, pid: int) -> bool:
        """Whether dnsd ``pid`` runs in another network namespace than the live gateway namespace
        (issue 11, item 7: the gateway namespace was deleted and made anew under it)."""
        return self.ctx.namespace is not None and not self.ctx.kernel.runs_in_gateway(pid)

    def dnsd_needs_restart(self) -> bool:
        """Whether a dnsd that should run is not serving (stopped, its supervisor gave up, the gateway
        namespace was deleted under it) or runs with other options than ``STATE_DIR/dnsd.options`` holds."""
        if not any(n.dns_enabled for n in self.ctx.store.networks()):
            return False
        found = self.ctx.dnsd.status()
        return (found is None or self.ctx.gateway_gone() or self.dnsd_is_stale(found[0])
                or (found[1] == MANAGED and self.ctx.dnsd.options_changed(found[0])))

    def replace_stale_dnsd(self) -> None:
        """Stop a managed dnsd left in a gateway namespace that is no longer the live one; the sync that
        ends the action starts one in the live namespace. A foreground dnsd is only reported."""
        found = self._status = self.ctx.dnsd.status()
        self._synced = None
        if found is None or not self.dnsd_is_stale(found[0]):
            return
        self._status = None
        pid, mode = found
        if mode != MANAGED:
            self.ctx.report.warnings.append(f"dnsd (pid {pid}, started by hand) serves a deleted gateway namespace: "
                                            f"restart it in {self.ctx.namespace}")
            return
        self.ctx.dnsd.stop()
        self.ctx.report.notes.append(f"replaced dnsd (pid {pid}), which served a deleted gateway namespace")

    def restart_if_options_changed(self) -> None:
        """Stop a managed dnsd started with other options than ``STATE_DIR/dnsd.options`` holds now; the sync
        that ends the action starts it with the new ones (a dnsd run by hand is left alone). Uses the status
        replace_stale_dnsd found just before it in the same frame: one round trip to dnsd, not two."""
        found, self._status = self._status, None
        if found is None:
            found = self.ctx.dnsd.status()
        if found is None or found[1] != MANAGED or not self.ctx.dnsd.options_changed(found[0]):
            return
        self.ctx.dnsd.stop()
        self.ctx.report.notices.append(f"restarted dnsd (pid {found[0]}) with the options of dnsd.options")

    # -- the firewall and the published host ports -----------------------------------------------------------

    def apply_firewall(self, force: bool = False, container_id: str | None = None) -> None:
        """Apply what the store calls for beyond the kernel objects: the published host ports held, the
        firewall, stale conntrack entries of changed UDP mappings cleared. Notices go to the report;
        NetcoreError (one line) on failure.

        Ports first (a port that cannot be bound fails before the firewall maps it), then the firewall,
        then what follows from it: conntrack entries of added and removed UDP/SCTP mappings are deleted
        once the new rules are live (deleted earlier, a packet in between would make a new stale one),
        and the ports no longer published are released. A port of container ``container_id`` that cannot
        be held raises (the action that published it is taken back); one of another container (the port
        holder was killed and a host process took the port meanwhile) is a warning. ``force``: apply the
        firewall even if the live rules look current (``netcore firewall-reload``).

        Once the state of a store generation was applied, the same generation is not derived and applied
        again (an action that applied before returning, then the frame around it), unless ``force``; and the
        firewall itself commits only a rendering that changed (netcore.firewall.apply.NftablesFirewall).
        """
        ctx = self.ctx
        generation = ctx.store.generation()
        if generation == self.firewall_generation and not force:
            return
        published = ctx.store.ports()  # none: every container and endpoint need not be read (a run's usual case)
        desired = desired_firewall(ctx.store.networks(), ctx.store.containers() if published else (),
                                   ctx.store.endpoints() if published else (), published)
        wanted = {mapping.held: mapping for mapping in desired.ports}
        running = ctx.ports.held()  # None: no port holder runs
        held = running or set()
        added = set(wanted) - held
        for port, reason in ctx.ports.hold(added, self.dnsd_addresses()).items():
            if wanted[port].container_id == container_id:
                raise PortError(reason)
            ctx.report.warnings.append(f"published port {port} of container {wanted[port].container} is not "
                                       f"held: {reason}; the mapping works, but that process will see none of its "
                                       "packets")
        try:
            ctx.report.notices += ctx.firewall.apply(desired, force) or ()
        except Exception as err:  # noqa: BLE001  (whatever the firewall raises, the user reads one line)
            raise NetcoreError(" ".join(str(err).split()) or type(err).__name__) from None
        gone = held - set(wanted)
        try:
            ctx.ports.forget(port for port in added | gone if port.protocol != "tcp")
        except PortError as err:
            ctx.report.warnings.append(str(err))
        ctx.ports.release(gone)
        if not wanted and (running is not None or added):
            ctx.ports.stop()  # nothing to hold: no holder process
        self.firewall_generation = generation

    def assert_firewall(self) -> None:
        """For commands that change nothing: put the firewall back if it is missing or differs (after an
        ``nft flush ruleset``, a reboot), under the state-dir lock so no stale state is applied. A failure is
        a warning: reading must not depend on the firewall."""
        if self.ctx.gateway_gone():
            return  # nothing built yet, or gone: the next mutating command makes it anew, firewall included
        with self.lock.held():
            try:
                self.apply_firewall()
            except NetcoreError as err:
                self.ctx.report.warnings.append(f"firewall not applied: {err}")

    # -- after an action -------------------------------------------------------------------------------------

    def after_action(self, force: bool = False) -> None:
        """What follows every action, in the frame: dnsd synced (a network it cannot serve is a warning), the
        firewall and the published ports applied (``force``: the firewall replaced whatever the live rules look
        like, ``netcore firewall-reload``), the host's resolver told (netcore host-dns on). dnsd is not synced
        again when a ``confirm`` of this action synced it to the store as it is now (a ``run``: one round trip
        to dnsd, not two)."""
        synced, self._synced = self._synced, None
        current = synced is not None and synced[0] == self.ctx.store.generation()
        self.warn_dns_down(synced[1] if current else self.sync_dns())
        try:
            self.apply_firewall(force=force)
        except NetcoreError as err:
            raise NetcoreError(f"firewall not applied: {err}; the change itself is done and the next "
                               "command applies the firewall again") from None
        self.ctx.host_resolver.apply(self.ctx.store.networks())

    def confirm(self, network: Network, undo: Callable[[], None], failure: str,
                container_id: str | None = None) -> None:
        """What an action that adds to ``network`` derives must follow, or the action is taken back.

        Syncs dnsd (issue 11, item 4: dnsd must listen on the network's gateway; once a sync of this action
        found it listening there, the names follow with the action's last sync, in ``after_action``: an ``up`` of
        many containers syncs dnsd once at its end, not once a container) and applies the firewall
        (issue 13: nft must take the new ruleset), holding the published ports of container ``container_id``
        (issue 14: a host port in use fails the run). If dnsd reports the gateway address(es) down, a port
        cannot be held, or the firewall refuses, runs ``undo`` (which takes back what the action built, store
        rows included), syncs and applies again (the old ruleset is still live: nft applies all or nothing),
        and raises NetcoreError ``FAILURE: dnsd cannot listen on ADDRESS port 53: ..., held by NAME (pid PID,
        ...)`` or ``FAILURE: nft rejected netcore's ruleset ...``.
        """
        reason = None
        if network.dns_enabled and not (self._synced and set(network.dns_addresses) <= self._synced[2]):
            down = self.sync_dns()
            reasons = [down[a] for a in network.dns_addresses if a in down]
            if reasons:
                reason = f"dnsd {'; '.join(reasons)}"
            else:
                served = {a for n in self.ctx.store.networks() if n.dns_enabled for a in n.dns_addresses} - set(down)
                self._synced = (self.ctx.store.generation(), down, frozenset(served))
        if reason is None:
            try:
                self.apply_firewall(container_id=container_id)
                return
            except NetcoreError as err:
                reason = str(err)
        undo()
        for follow in (self.sync_dns, self.apply_firewall):
            with suppress(NetcoreError):  # the failure below is the one to report
                follow()
        raise NetcoreError(f"{failure}: {reason}")
