"""In-memory stand-ins for what the engine is given: a kernel (netcore.kernel.Kernel), dnsd's control, a clock.

``FakeKernel`` models what netcore builds: named namespaces holding links
(bridges, veth ends with their peer, loopback), their addresses and default
routes, and each namespace's /etc/netns files. It behaves as the kernel does
where the engine relies on it: deleting one end of a veth deletes its peer,
deleting a namespace deletes the veths with an end in it, deleting a bridge
frees its ports, a name taken twice is refused. ``kill_at`` makes it stand for
a netcore process killed with SIGKILL at one kernel call: that call and every
later one raise ``Killed`` until ``revive()``, so no more of the process's
kernel or store work happens, and the test starts the next "process".
``World`` (the fixture ``new_world`` makes one) is one state dir and one such kernel,
with a new Engine, a new "process", each time ``engine()`` is called.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from netcore.engine import Engine
from netcore.errors import NetcoreError
from netcore.kernel.netlink import KernelError, Route, missing_feature
from netcore.model import EXIT_UNKNOWN, STATE_RUNNING
from netcore.ports import HostPort
from netcore.ports.holder import PortError

HOST = ""  # the host's own namespace, where the gateway's links live when there is no gateway namespace


class Killed(BaseException):
    """The process died here (SIGKILL): nothing catches it, not even the engine's undo."""


@dataclass
class Link:
    kind: str  # "loopback", "bridge", "veth", "macvlan", "ipvlan", "vlan", "dummy", "vxlan" or "physical"
    master: str | None = None
    mac: str | None = None
    mtu: int = 1500
    addresses: list[str] = field(default_factory=list)  # "ADDRESS/PREFIXLEN"
    up: bool = False
    isolated: bool = False
    peer: tuple[str, str] | None = None  # (namespace, name) of a veth's other end
    parent: tuple[str, str] | None = None  # (namespace, name) of a macvlan/ipvlan/vlan link's parent
    mode: str | None = None  # a macvlan/ipvlan link's mode
    vxlan: tuple[int, str, int] | None = None  # a VXLAN device's (ID, local address, UDP port)


@dataclass
class Namespace:
    links: dict[str, Link] = field(default_factory=lambda: {"lo": Link("loopback", up=True)})
    default_routes: dict[int, str] = field(default_factory=dict)  # IP version -> gateway address


class FakeKernel:
    """A netcore.kernel.Kernel in memory; ``calls`` journals every call as (method, first argument)."""

    def __init__(self, namespace: str | None):
        self.namespace = namespace
        self.gateway_ns = namespace or HOST
        self.namespaces: dict[str, Namespace] = {HOST: Namespace()}
        self.etc: dict[str, tuple[str, str]] = {}  # namespace -> (resolv.conf, hosts)
        self.files: dict[str, str] = {}  # the host's files netcore reads (path -> text): /etc/resolv.conf ...
        self.extra_routes: list[str] = []  # routes of the gateway namespace netcore did not make
        self.calls: list[tuple[str, str | None]] = []
        self._kill: tuple[str, int] | None = None
        self._failures: dict[str, list[Exception]] = {}
        self.killed = False
        self.observer = None  # called as observer(method, arg) before each call: what the store says meanwhile
        self.unsupported: set[str] = set()  # link kinds this kernel lacks (EOPNOTSUPP), e.g. {"vlan", "dummy"}

    # -- faults ---------------------------------------------------------------

    def kill_at(self, method: str, nth: int = 1) -> None:
        """The ``nth`` call of ``method`` from now, and every call after it, raise Killed."""
        self._kill = (method, nth)

    def fail_at(self, method: str, error: Exception) -> None:
        """The next call of ``method`` raises ``error`` (the kernel refused) and changes nothing."""
        self._failures.setdefault(method, []).append(error)

    def revive(self) -> None:
        """The next process: kernel calls work again."""
        self.killed = False
        self._kill = None

    def reboot(self) -> None:
        """Every namespace but the host's is gone (/run is a tmpfs); the files of /etc/netns stay (on disk)."""
        self.namespaces = {HOST: Namespace()}

    def _call(self, method: str, arg: str | None = None) -> None:
        self.calls.append((method, arg))
        if self.observer:
            self.observer(method, arg)
        if self._kill and self._kill[0] == method:
            self._kill = (method, self._kill[1] - 1)
            if self._kill[1] == 0:
                self.killed = True
        if self.killed:
            raise Killed(f"killed at {method}({arg})")
        if self._failures.get(method):
            raise self._failures[method].pop(0)

    def _ns(self, name: str, action: str) -> Namespace:
        if name not in self.namespaces:
            raise KernelError(f"{action}: no such namespace {name}")
        return self.namespaces[name]

    @property
    def gateway(self) -> Namespace:
        return self._ns(self.gateway_ns, "gateway namespace")

    def _remove_link(self, namespace: str, name: str) -> None:
        link = self.namespaces[namespace].links.pop(name)
        if link.kind == "bridge":
            for port in self.namespaces[namespace].links.values():
                if port.master == name:
                    port.master = None
        if link.peer and link.peer[0] in self.namespaces:
            self.namespaces[link.peer[0]].links.pop(link.peer[1], None)
        for space, links in [(n, dict(s.links)) for n, s in self.namespaces.items()]:
            for child_name, child in links.items():  # a parent deleted takes its macvlan/vlan links along
                if child.parent == (namespace, name):
                    self._remove_link(space, child_name)

    # -- the gateway namespace --------------------------------------------------

    def ensure(self) -> bool:
        self._call("ensure", self.namespace)
        if self.namespace and self.namespace not in self.namespaces:
            self.namespaces[self.namespace] = Namespace()
            return True
        return False

    def routes(self) -> list[Route]:
        self._call("routes")
        connected = [Route(ipaddress.ip_interface(a).network, name) for name, link in self.gateway.links.items()
                     if link.up for a in link.addresses]
        return connected + [Route(ipaddress.ip_network(r), None) for r in self.extra_routes]

    def links(self) -> dict[str, dict]:
        self._call("links")
        return {name: {"kind": None if link.kind == "loopback" else link.kind, "master": link.master,
                       "mtu": link.mtu, "addresses": list(link.addresses)} for name, link in self.gateway.links.items()}

    def create_bridge(self, name: str, mac: str, mtu: int, gateway: str, prefixlen: int,
                      gateway6: str | None = None, prefixlen6: int | None = None) -> None:
        self._call("create_bridge", name)
        bridge = self.gateway.links.setdefault(name, Link("bridge"))
        if bridge.kind != "bridge":
            raise KernelError(f"cannot create bridge {name}: File exists")
        bridge.mac, bridge.mtu, bridge.up = mac, mtu, True
        for address in (f"{gateway}/{prefixlen}", f"{gateway6}/{prefixlen6}" if gateway6 else None):
            if address and address not in bridge.addresses:
                bridge.addresses.append(address)

    def delete_link(self, name: str) -> None:
        self._call("delete_link", name)
        if name in self.gateway.links:
            self._remove_link(self.gateway_ns, name)

    def release_link(self, name: str) -> None:
        self._call("release_link", name)
        link = self.gateway.links.get(name)
        if link is not None:
            link.up, link.master = False, None

    def attach_endpoint(self, container_ns: str, host_ifname: str, ifname: str, bridge: str, mtu: int,
                        mac: str, isolated: bool) -> None:
        self._call("attach_endpoint", host_ifname)
        inside = self._ns(container_ns, f"cannot create veth {host_ifname}")
        if bridge not in self.gateway.links:
            raise KernelError(f"cannot create veth {host_ifname}: no bridge {bridge}")
        if host_ifname in self.gateway.links:
            self._remove_link(self.gateway_ns, host_ifname)
        if ifname in inside.links:
            raise KernelError(f"cannot create veth {host_ifname}: File exists ({ifname} in {container_ns})")
        self.gateway.links[host_ifname] = Link("veth", master=bridge, mtu=mtu, up=True, isolated=isolated,
                                               peer=(container_ns, ifname))
        inside.links[ifname] = Link("veth", mac=mac, mtu=mtu, peer=(self.gateway_ns, host_ifname))

    def create_lan_link(self, kind: str, name: str, parent: str, mode: str, mtu: int | None = None,
                        mac: str | None = None, netns: str | None = None, address: str | None = None,
                        prefixlen: int | None = None) -> None:
        self._call("create_lan_link", name)
        action = f"cannot create {kind} link {name} on {parent}"
        if kind in self.unsupported:
            raise missing_feature(action, kind)
        if parent not in self.gateway.links:
            raise KernelError(f"{action}: there is no interface {parent} in the gateway namespace")
        where = netns if netns is not None else self.gateway_ns
        space = self._ns(where, action)
        if name in space.links and netns is not None:
            raise KernelError(f"{action}: File exists")
        link = space.links.setdefault(name, Link(kind, mac=mac, mtu=mtu or self.gateway.links[parent].mtu,
                                                 parent=(self.gateway_ns, parent), mode=mode))
        if netns is None:
            if address and f"{address}/{prefixlen}" not in link.addresses:
                link.addresses.append(f"{address}/{prefixlen}")
            link.up = True

    def create_parent(self, kind: str, name: str, base: str | None = None, vlan_id: int | None = None) -> None:
        self._call("create_parent", name)
        action = f"cannot create {kind} link {name}"
        if kind in self.unsupported:
            raise missing_feature(action, kind)
        if kind == "vlan" and base not in self.gateway.links:
            raise KernelError(f"{action}: there is no interface {base} in the gateway namespace")
        link = self.gateway.links.setdefault(
            name, Link(kind, parent=(self.gateway_ns, base) if kind == "vlan" else None))
        link.up = True

    def create_vxlan(self, name: str, vni: int, local: str, underlay: str, port: int, mtu: int,
                     master: str) -> None:
        self._call("create_vxlan", name)
        action = f"cannot create VXLAN device {name}"
        if "vxlan" in self.unsupported:
            raise missing_feature(action, "vxlan")
        if underlay not in self.gateway.links:
            raise KernelError(f"{action}: there is no interface {underlay} in the gateway namespace")
        if master not in self.gateway.links:
            raise KernelError(f"{action}: there is no bridge {master}")
        link = self.gateway.links.get(name)
        if link is None or link.vxlan is None or link.vxlan[0] != vni:
            link = self.gateway.links[name] = Link("vxlan", parent=(self.gateway_ns, underlay),
                                                   vxlan=(vni, local, port))
        link.mtu, link.master, link.up = mtu, master, True

    def add_physical(self, name: str, mtu: int = 1500, addresses: list[str] = ()) -> None:
        """A link netcore did not make in the gateway namespace (a NIC, a veth to the LAN): a parent to give,
        with the host's ``addresses`` on it ("192.168.77.50/24": its connected route comes with it)."""
        self.gateway.links[name] = Link("physical", mtu=mtu, up=True, addresses=list(addresses))

    def runs_in_gateway(self, pid: int) -> bool:
        return True

    def close(self) -> None:
        self.calls.append(("close", None))

    def revalidate(self) -> bool:
        self.calls.append(("revalidate", None))
        return False

    # -- named namespaces -------------------------------------------------------

    def namespace_exists(self, name: str) -> bool:
        return name in self.namespaces

    def list_namespaces(self) -> list[str]:
        return sorted(n for n in self.namespaces if n != HOST)

    def create_namespace(self, name: str) -> None:
        self._call("create_namespace", name)
        self.namespaces.setdefault(name, Namespace())

    def delete_namespace(self, name: str) -> None:
        self._call("delete_namespace", name)
        gone = self.namespaces.pop(name, None)
        for link in (gone.links.values() if gone else ()):
            if link.peer and link.peer[0] in self.namespaces:
                self._remove_link(link.peer[0], link.peer[1])

    def configure_container_interface(self, container_ns: str, ifname: str, address: str | None, prefixlen: int,
                                      gateway: str | None, address6: str | None = None,
                                      prefixlen6: int | None = None, gateway6: str | None = None) -> None:
        self._call("configure_container_interface", f"{container_ns}/{ifname}")
        inside = self._ns(container_ns, f"cannot configure {ifname}")
        if ifname not in inside.links:
            raise KernelError(f"cannot configure {ifname} in {container_ns}: no such device")
        link = inside.links[ifname]
        for value in (f"{address}/{prefixlen}" if address else None, f"{address6}/{prefixlen6}" if address6 else None):
            if value and value not in link.addresses:
                link.addresses.append(value)
        link.up = True
        for version, via in ((4, gateway), (6, gateway6)):
            if via:
                inside.default_routes.setdefault(version, via)

    def delete_container_link(self, container_ns: str, ifname: str) -> None:
        self._call("delete_container_link", f"{container_ns}/{ifname}")
        if ifname in self._ns(container_ns, f"cannot delete {ifname}").links:
            self._remove_link(container_ns, ifname)

    # -- /etc/netns ---------------------------------------------------------------

    def write_etc(self, namespace: str, resolv: str, hosts: str) -> None:
        self._call("write_etc", namespace)
        self.etc[namespace] = (resolv, hosts)

    def remove_etc(self, namespace: str) -> None:
        self._call("remove_etc", namespace)
        self.etc.pop(namespace, None)

    def list_etc(self) -> list[str]:
        return sorted(self.etc)

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)

    # -- what tests read ------------------------------------------------------------

    def container_namespaces(self) -> list[str]:
        """Every namespace but the host's and the gateway's."""
        return [n for n in self.list_namespaces() if n != self.gateway_ns]

    def gateway_links(self, kind: str) -> dict[str, Link]:
        return {name: link for name, link in self.gateway.links.items() if link.kind == kind}


class FakeDnsd:
    """DnsdControl's surface the engine uses: ``down`` is what every sync reports ({address: why})."""

    def __init__(self):
        self.down: dict[str, str] = {}
        self.syncs = 0
        self.stops = 0

    def status(self) -> tuple[int, str] | None:
        return None

    def sync(self) -> dict[str, str]:
        self.syncs += 1
        return dict(self.down)

    def stop(self) -> None:
        self.stops += 1

    def listeners_down(self) -> dict[str, str] | None:
        return dict(self.down)

    def options_changed(self, pid: int) -> bool:
        return False

    def rotate_log(self) -> None:
        pass


class FakePorts:
    """netcore.ports.holder.HostPorts in memory: ``busy`` are ports host processes hold (check and hold
    refuse them), ``holding`` what the holder keeps (set it empty: the holder was killed), ``running``
    whether a holder process runs at all,
    ``forgotten`` every port whose conntrack entries were cleared, in order; ``shared_with`` the dnsd
    addresses the engine passed with its last check or hold."""

    def __init__(self):
        self.busy: set[HostPort] = set()
        self.holding: set[HostPort] = set()
        self.forgotten: list[HostPort] = []
        self.range = ((32768, 32775), frozenset({32770}))
        self.stops = 0
        self.running = False  # a holder process runs (it may hold nothing)
        self.shared_with: frozenset[str] = frozenset()

    def _reason(self, port: HostPort) -> str:
        return f"Bind for {port.address}:{port.port} failed: port is already allocated ({port.protocol}, " \
               "held by squatter (pid 7))"

    def check(self, port: HostPort, shared_with=()) -> None:
        self.shared_with = frozenset(shared_with)
        if port in self.busy:
            raise PortError(self._reason(port))

    def local_range(self):
        return self.range

    def held(self) -> set[HostPort] | None:
        return set(self.holding) if self.holding or self.running else None

    def hold(self, ports, shared_with=()) -> dict[HostPort, str]:
        self.shared_with = frozenset(shared_with)
        failures = {}
        for port in ports:
            if port in self.busy:
                failures[port] = self._reason(port)
            else:
                self.holding.add(port)
                self.running = True
        return failures

    def release(self, ports) -> None:
        self.holding -= set(ports)

    def forget(self, ports) -> int:
        self.forgotten += sorted(ports)
        return 0

    def stop(self) -> None:
        self.stops += 1
        self.holding = set()
        self.running = False


class FakeClock:
    """A clock that ticks one microsecond per reading; ``boot`` is the boot ID it reports."""

    def __init__(self):
        self.ticks = 0
        self.boot = "boot-1"

    def now(self) -> str:
        self.ticks += 1
        return f"2026-01-01T00:00:00.{self.ticks:06d}Z"

    def boot_id(self) -> str:
        return self.boot


class FakeSupervisor:
    """netcore.engine.context.Supervisor in memory: each process a pid with its namespace and whether it runs.
    ``start`` refuses a program called ``missing`` (127); ``exec_in(netns)`` puts a stray process in a
    namespace (an ``exec`` left running); ``exit(pid, code)`` ends one; ``forget_children()`` is what a new
    agent sees (it is no one's parent: a process that ends then has no known status). Signals end processes
    with 128 + the signal, unless ``ignore_term`` holds their pid (then only SIGKILL does)."""

    def __init__(self, log_dir: str = "/nonexistent"):
        self.log_dir = log_dir
        self.next_pid = 1000
        self.procs: dict[int, dict] = {}  # pid -> {"netns", "argv", "code", "child"}
        self.ignore_term: set[int] = set()
        self.graces: list[float] = []
        self.forgotten: list[str] = []

    def _new(self, netns, argv) -> int:
        self.next_pid += 1
        self.procs[self.next_pid] = {"netns": netns, "argv": tuple(argv), "code": None, "child": True}
        return self.next_pid

    def start(self, container_id, netns, argv, env):
        if argv[0] == "missing":
            raise NetcoreError(f"exec: {argv[0]}: executable file not found in $PATH", exit_code=127)
        pid = self._new(netns, argv)
        return pid, pid * 10

    def exec_in(self, netns: str) -> int:
        return self._new(netns, ("sleep",))

    def exit(self, pid: int, code: int) -> None:
        self.procs[pid]["code"] = code

    def forget_children(self) -> None:
        for proc in self.procs.values():
            proc["child"] = False

    def alive(self, pid, start_ticks):
        proc = self.procs.get(pid)
        return proc is not None and proc["code"] is None

    def poll(self, container_id, pid, start_ticks):
        proc = self.procs.get(pid)
        if proc is None or proc["code"] is not None:
            return proc["code"] if proc is not None and proc["child"] else EXIT_UNKNOWN
        return None

    def running(self, target):
        pids = {target.pid} if target.pid and self.alive(target.pid, None) else set()
        if target.netns:
            pids |= {pid for pid, p in self.procs.items() if p["netns"] == target.netns and p["code"] is None
                     and pid not in target.spare}
        return sorted(pids)

    def stop(self, targets, grace):
        self.graces.append(grace)
        for target in targets:
            for pid in self.running(target):
                if pid not in self.ignore_term:
                    self.procs[pid]["code"] = 143
        for target in targets:
            for pid in self.running(target):
                self.procs[pid]["code"] = 137

    def log_path(self, container_id):
        return f"{self.log_dir}/{container_id}.log"

    def forget(self, container_id):
        self.forgotten.append(container_id)


GATEWAY_NS = "gw"


class World:
    """One state dir and one kernel; ``engine()`` is a new netcore process on them."""

    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.kernel = FakeKernel(GATEWAY_NS)
        self.dnsd = FakeDnsd()
        self.clock = FakeClock()
        self.ports = FakePorts()
        self.processes = FakeSupervisor(state_dir)
        self._engines: list[Engine] = []

    def engine(self, **given) -> Engine:
        given.setdefault("ports", self.ports)
        given.setdefault("processes", self.processes)
        engine = Engine(self.state_dir, GATEWAY_NS, kernel=self.kernel, dnsd=self.dnsd, clock=self.clock, **given)
        self._engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self._engines:
            engine.store.close()

    def assert_consistent(self, engine: Engine) -> None:
        """Store and kernel agree: a namespace per container, a veth per endpoint on a bridge, a bridge per
        bridge network; a macvlan/ipvlan link per endpoint on such a network, in its container, and a shim
        for each such network that has one."""
        store = engine.store
        assert sorted(self.kernel.container_namespaces()) == sorted(c.netns for c in store.containers())
        networks = {n.id: n for n in store.networks()}
        on_lan = [e for e in store.endpoints() if not networks[e.network_id].routed_by_gateway]
        assert sorted(self.kernel.gateway_links("veth")) == sorted(e.host_ifname for e in store.endpoints()
                                                                   if e not in on_lan)
        assert sorted(self.kernel.gateway_links("bridge")) == sorted(n.bridge for n in networks.values()
                                                                     if n.routed_by_gateway)
        for endpoint in on_lan:
            netns = store.find_container_by_id(endpoint.container_id).netns
            assert self.kernel.namespaces[netns].links[endpoint.ifname].kind == networks[endpoint.network_id].driver
        shims = {*self.kernel.gateway_links("macvlan"), *self.kernel.gateway_links("ipvlan")}
        assert sorted(shims) == sorted(n.bridge for n in networks.values() if n.reserved_addresses)
        assert all(r.state == STATE_RUNNING for r in (*store.networks(), *store.containers(), *store.endpoints()))
        assert sorted(self.kernel.etc) == sorted(c.netns for c in store.containers())


def new_world(tmp_path) -> Iterator[World]:
    """The ``world`` fixture of the engine's tests (``world = pytest.fixture(new_world)``)."""
    w = World(str(tmp_path / "state"))
    yield w
    w.close()
