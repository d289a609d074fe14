"""Running CNI plugin chains the way a runtime does, inside a sandbox (issue 29's tests and bench/cni.py).

``CniBox`` owns: a network namespace (the "host" the runtime runs in: the
bridge plugin builds its bridge there, dnsd or dnsname's dnsmasq serve there);
a fake upstream DNS server on that namespace's loopback (192.0.2.53); a mount
namespace, held by a ``sleep`` process, whose /etc/resolv.conf names it (so
dnsmasq and dnsd forward there, never to the machine's resolver); a temporary
directory for everything the chains keep (host-local's leases, dnsname's
files through ``XDG_RUNTIME_DIR``, our plugin's state dir, the plugin directory
with ``netcore-dns`` installed by ``dnsd cni-install``). Containers are network
namespaces named with the box's prefix. ``close`` removes all of it, stopping
the processes the box or the chains started in its namespace (by PID).

``Chain`` is libcni's execution of a conflist (SPEC.md section 3): ADD runs the
plugins in order, each given the previous one's result as ``prevResult``; DEL
runs them in reverse with the ADD's final result; CHECK in order with it;
``runtimeConfig`` holds the capability arguments a plugin declares in
``capabilities``; every plugin gets the ``CNI_*`` variables and its
configuration on stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CNI_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins and dnsname
DNSNAME_DIR = "/run/containers/cni"  # dnsname keeps its dnsmasq files under it (rootful, no XDG_RUNTIME_DIR)
UPSTREAM_ADDRESS = "192.0.2.53"  # TEST-NET-1, on the sandbox's loopback: resolv.conf's nameserver


def unavailable(*plugins: str) -> str | None:
    """Why the chains cannot run here (one line), or None."""
    if os.geteuid() != 0:
        return "CNI chains need root"
    for plugin in ("bridge", "host-local", *plugins):
        if not os.access(os.path.join(CNI_DIR, plugin), os.X_OK):
            return f"{CNI_DIR}/{plugin} is missing (apt-get install containernetworking-plugins " \
                   "golang-github-containernetworking-plugin-dnsname)"
    for tool in ("nsenter", "unshare", "dnsmasq"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class PluginFailed(AssertionError):
    """A plugin exited non-zero: its status and the document it printed."""

    def __init__(self, plugin: str, command: str, status: int, output: str, stderr: str):
        super().__init__(f"{plugin} {command} failed ({status}): {output.strip()} {stderr.strip()}")
        self.plugin = plugin
        self.status = status
        self.output = output
        try:
            self.document = json.loads(output)
        except ValueError:
            self.document = None


class CniBox:
    """A sandbox for CNI chains (see the module's docstring)."""

    def __init__(self, prefix: str | None = None, python_only: bool = False):
        self.python_only = python_only  # netcore-dns as the Python script, not the C executable
        self.prefix = prefix or f"cni{uuid.uuid4().hex[:6]}"
        self.netns = self.prefix
        self.netns_path = f"/run/netns/{self.netns}"
        self.workdir = tempfile.mkdtemp(prefix=f"{self.prefix}-")
        self.plugin_dir = os.path.join(self.workdir, "bin")
        self.state_dir = os.path.join(self.workdir, "netcore-cni")  # our plugin's (cni-install --state-dir)
        self.xdg_runtime_dir = os.path.join(self.workdir, "xdg")  # dnsname's files
        self.ipam_dir = os.path.join(self.workdir, "ipam")
        self.holder: subprocess.Popen | None = None
        self.upstream: subprocess.Popen | None = None
        self.containers: list[str] = []
        try:
            self._set_up()
        except BaseException:
            self.close()
            raise

    def _set_up(self) -> None:
        os.makedirs(self.xdg_runtime_dir)
        subprocess.run([sys.executable, "-m", "dnsd", "cni-install", "--state-dir", self.state_dir,
                        *(["--python-only"] if self.python_only else []), self.plugin_dir],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": REPO})
        resolv = os.path.join(self.workdir, "resolv.conf")
        with open(resolv, "w") as out:
            out.write(f"nameserver {UPSTREAM_ADDRESS}\n")
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        self.ip("link", "set", "lo", "up")
        self.ip("addr", "add", f"{UPSTREAM_ADDRESS}/32", "dev", "lo")
        self.upstream = subprocess.Popen(
            ["nsenter", f"--net={self.netns_path}", sys.executable, os.path.join(HERE, "fake_upstream.py"),
             "--address", UPSTREAM_ADDRESS, "--nxdomain-unknown"], stdout=subprocess.PIPE, text=True)
        assert self.upstream.stdout.readline().strip() == "ready"
        os.makedirs(DNSNAME_DIR, exist_ok=True)  # dnsname's files: a private tmpfs over it in the holder's view
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", "sh", "-c",
             f"mount -t tmpfs tmpfs {DNSNAME_DIR} && mount --bind {resolv} /etc/resolv.conf "
             "&& echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"

    @property
    def enter(self) -> list[str]:
        """The command prefix that runs a program where the runtime runs plugins: the box's namespaces."""
        return ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net={self.netns_path}"]

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.netns, *args], check=True)

    def container(self, suffix: str) -> str:
        """A new container network namespace; returns its path (CNI_NETNS)."""
        name = f"{self.prefix}-{suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        self.containers.append(name)
        return f"/run/netns/{name}"

    def remove_container(self, netns_path: str) -> None:
        name = os.path.basename(netns_path)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        with contextlib.suppress(ValueError):
            self.containers.remove(name)

    def in_container(self, netns_path: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """A program in a container's namespace, with the box's mount namespace (its resolv.conf)."""
        return subprocess.run(["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net={netns_path}", *argv],
                              capture_output=True, text=True, timeout=timeout)

    def chain(self, name: str, subnet: str, dns: str = "netcore-dns", bridge: str | None = None,
              version: str = "1.0.0", **dns_options) -> Chain:
        """A bridge + host-local conflist with ``dns`` (netcore-dns, dnsname, or "" for none) chained last."""
        plugins = [{"type": "bridge", "bridge": bridge or f"{self.prefix[:8]}{len(name) % 10}{name[:4]}"[:15],
                    "isGateway": True, "ipMasq": False, "hairpinMode": True,
                    "ipam": {"type": "host-local", "dataDir": self.ipam_dir,
                             "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}}]
        if dns == "netcore-dns":
            plugins.append({"type": "netcore-dns", "capabilities": {"aliases": True}, **dns_options})
        elif dns == "dnsname":
            plugins.append({"type": "dnsname", "domainName": dns_options.get("domainName", "dns.podman"),
                            "capabilities": {"aliases": True}})
        return Chain(self, {"cniVersion": version, "name": name, "plugins": plugins})

    def dnsd_pids(self) -> list[int]:
        """The dnsd and supervisor processes serving the box's state dir."""
        from netcore.dnsd_protocol.control import is_dnsd_process

        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                pid = int(entry)
                if is_dnsd_process(pid, self.state_dir) or is_dnsd_process(pid, self.state_dir, supervisor=True):
                    found.append(pid)
        return found

    def processes_in_box(self) -> list[int]:
        """Every process whose network namespace is the box's (dnsd, dnsmasq, the fake upstream ...)."""
        try:
            inode = os.stat(self.netns_path).st_ino
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                        found.append(int(entry))
        return found

    def close(self) -> None:
        """Stop what runs in the box's namespace (dnsd, dnsmasq: started by the chains there), then remove all."""
        for pid in self.dnsd_pids() if os.path.isdir(self.state_dir) else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for process in (self.holder, self.upstream):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        for pid in self.processes_in_box():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for name in list(self.containers):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        if os.path.exists(self.netns_path):
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Namespaces with the box's prefix still there (a test asserts none after close)."""
        try:
            return sorted(name for name in os.listdir("/run/netns") if name.startswith(self.prefix))
        except FileNotFoundError:
            return []


class Chain:
    """One network's conflist, run as libcni runs it (see the module's docstring)."""

    def __init__(self, box: CniBox, conflist: dict):
        self.box = box
        self.conflist = conflist
        self.results: dict[tuple[str, str], dict] = {}  # (container ID, ifname) -> the ADD's final result

    @property
    def name(self) -> str:
        return self.conflist["name"]

    def plugin_config(self, plugin: dict, capability_args: dict, previous: dict | None) -> dict:
        """SPEC.md "Deriving request configuration from plugin configuration"."""
        config = {key: value for key, value in plugin.items() if key != "capabilities"}
        config["cniVersion"] = self.conflist["cniVersion"]
        config["name"] = self.conflist["name"]
        runtime = {key: value for key, value in capability_args.items()
                   if plugin.get("capabilities", {}).get(key)}
        if runtime:
            config["runtimeConfig"] = runtime
        if previous is not None:
            config["prevResult"] = previous
        return config

    def exec_plugin(self, plugin_type: str, command: str, env: dict, config: dict,
                    check: bool = True) -> subprocess.CompletedProcess:
        path = os.path.join(self.box.plugin_dir if plugin_type == "netcore-dns" else CNI_DIR, plugin_type)
        full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                    "CNI_COMMAND": command, "CNI_PATH": f"{self.box.plugin_dir}:{CNI_DIR}",
                    "XDG_RUNTIME_DIR": self.box.xdg_runtime_dir, **env}
        proc = subprocess.run([*self.box.enter, path], input=json.dumps(config), capture_output=True, text=True,
                              env=full_env, timeout=60)
        if check and proc.returncode != 0:
            raise PluginFailed(plugin_type, command, proc.returncode, proc.stdout, proc.stderr)
        return proc

    def _env(self, container_id: str, netns: str, ifname: str, name: str | None, args: dict | None) -> dict:
        cni_args = {"IgnoreUnknown": "1", **({"K8S_POD_NAME": name} if name else {}), **(args or {})}
        return {"CNI_CONTAINERID": container_id, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                "CNI_ARGS": ";".join(f"{key}={value}" for key, value in cni_args.items())}

    def add(self, container_id: str, netns: str, name: str | None = None, ifname: str = "eth0",
            aliases: list[str] | None = None, args: dict | None = None) -> dict:
        """ADD through the whole chain; the final result (also kept for DEL and CHECK)."""
        env = self._env(container_id, netns, ifname, name, args)
        capability_args = {"aliases": {self.name: aliases}} if aliases else {}
        previous = None
        for plugin in self.conflist["plugins"]:
            proc = self.exec_plugin(plugin["type"], "ADD", env, self.plugin_config(plugin, capability_args, previous))
            previous = json.loads(proc.stdout)
        self.results[(container_id, ifname)] = previous
        return previous

    def delete(self, container_id: str, netns: str, name: str | None = None, ifname: str = "eth0",
               aliases: list[str] | None = None, args: dict | None = None) -> None:
        """DEL through the chain in reverse, with the ADD's final result (none if there was no ADD)."""
        env = self._env(container_id, netns, ifname, name, args)
        capability_args = {"aliases": {self.name: aliases}} if aliases else {}
        previous = self.results.pop((container_id, ifname), None)
        for plugin in reversed(self.conflist["plugins"]):
            self.exec_plugin(plugin["type"], "DEL", env, self.plugin_config(plugin, capability_args, previous))

    def check(self, container_id: str, netns: str, name: str | None = None, ifname: str = "eth0",
              plugins: tuple[str, ...] | None = None) -> None:
        """CHECK through the chain (or only ``plugins``) with the ADD's final result."""
        env = self._env(container_id, netns, ifname, name, None)
        previous = self.results[(container_id, ifname)]
        for plugin in self.conflist["plugins"]:
            if plugins is None or plugin["type"] in plugins:
                self.exec_plugin(plugin["type"], "CHECK", env, self.plugin_config(plugin, {}, previous))


def dig(box: CniBox, netns_path: str, server: str, name: str, qtype: str = "A") -> list[str]:
    """``dig +short`` from a container (or any namespace path) at ``server``: the answer lines."""
    proc = box.in_container(netns_path, "dig", "+short", "+tries=2", "+time=1", f"@{server}", name, qtype)
    return [line for line in proc.stdout.split() if line and not line.startswith(";")]


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
            return True
        time.sleep(0.05)
    return False
