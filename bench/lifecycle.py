"""Per-container create and remove: netcore (its CLI through netcored) beside netavark and a plain `ip` script.

    sudo python3 bench/lifecycle.py [--containers 50,500] [--block 10] [--skip-netavark]

Issue 26's table, from one run: for each tool the same network shape (one bridge network, N containers with
an address, a default route and their /etc/netns files), created and removed in interleaved blocks of
``--block`` containers (netcore, ip, netavark, netcore, ip, ...), every container timed alone; medians and
p90 per container. Beside it: the CLI's own share (a request the agent answers without work: interpreter
start, imports, connect, print), `netcore up` of 100 containers, the agent's RSS and its idle CPU.

netavark 1.4 runs as Podman runs it (`setup`/`teardown` with its JSON on stdin, its iptables firewall and
aardvark-dns), inside a sandbox namespace with a private view of its state dir and of /etc/resolv.conf
(/work/shared/notes/netavark-by-hand.md), plus `ip netns add`/`del` for the container's namespace, which
Podman makes too; the `nsenter` it runs under costs ~2.5 ms that Podman does not pay (not subtracted).
Everything lives in namespaces named ncl<hex>* made here and removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETAVARK = "/usr/lib/podman/netavark"
AARDVARK = "/usr/lib/podman/aardvark-dns"


def sh(*argv: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, env=env)


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


class Netcore:
    name = "netcore run / rm"

    def __init__(self, prefix: str):
        self.state = tempfile.mkdtemp(prefix="ncl-state-")
        self.env = dict(os.environ, NETCORE_NETNS=f"{prefix}nc", NETCORE_STATE_DIR=self.state,
                        PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.nc("network", "create", "--subnet", "10.201.0.0/16", "bench")

    def nc(self, *args: str) -> subprocess.CompletedProcess:
        return sh(sys.executable, "-m", "netcore", *args, env=self.env)

    def create(self, i: int) -> None:
        self.nc("run", "--name", f"c{i}", "--net", "bench")

    def remove(self, i: int) -> None:
        self.nc("rm", f"c{i}")

    def close(self) -> None:
        subprocess.run([sys.executable, "-m", "netcore", "purge"], env=self.env, capture_output=True)
        shutil.rmtree(self.state, ignore_errors=True)


class IpScript:
    name = "a plain `ip` script"

    def __init__(self, prefix: str):
        self.prefix, self.gw = prefix, f"{prefix}ip"
        sh("ip", "netns", "add", self.gw)
        sh("ip", "-n", self.gw, "link", "add", "br-bench", "type", "bridge")
        sh("ip", "-n", self.gw, "addr", "add", "10.202.0.1/16", "dev", "br-bench")
        sh("ip", "-n", self.gw, "link", "set", "br-bench", "up")

    def create(self, i: int) -> None:
        ns, veth, addr = f"{self.prefix}i{i}", f"veth{i:07x}", f"10.202.{i // 250}.{i % 250 + 2}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.gw, "link", "add", veth, "mtu", "1500", "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        sh("ip", "-n", self.gw, "link", "set", veth, "master", "br-bench", "up")
        sh("ip", "-n", ns, "link", "set", "eth0", "address", f"02:42:0a:ca:{i // 256:02x}:{i % 256:02x}", "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/16", "dev", "eth0")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.202.0.1")
        os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
        with open(f"/etc/netns/{ns}/resolv.conf", "w") as f:
            f.write("nameserver 10.202.0.1\n")
        with open(f"/etc/netns/{ns}/hosts", "w") as f:
            f.write(f"127.0.0.1\tlocalhost\n{addr}\tc{i}\n")

    def remove(self, i: int) -> None:
        ns = f"{self.prefix}i{i}"
        sh("ip", "-n", self.gw, "link", "del", f"veth{i:07x}")
        sh("ip", "netns", "delete", ns)
        shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)

    def close(self) -> None:
        for ns in os.listdir("/run/netns"):
            if ns.startswith(f"{self.prefix}i") or ns == self.gw:
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
                shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


class Netavark:
    name = "netavark 1.4 setup / teardown"

    def __init__(self, prefix: str):
        self.prefix, self.sandbox = prefix, f"{prefix}nv"
        self.work = tempfile.mkdtemp(prefix="ncl-netavark-")
        with open(os.path.join(self.work, "resolv.conf"), "w") as f:
            f.write("nameserver 10.203.255.254\n")  # inside the sandbox: nothing answers, nothing leaves
        os.makedirs("/run/containers/networks", exist_ok=True)
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", "sh", "-c",
             "mount -t tmpfs tmpfs /run/containers/networks && mount --bind "
             f"{self.work}/resolv.conf /etc/resolv.conf && echo ready && exec sleep infinity"],
            stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout.readline().strip() == "ready"
        sh("ip", "netns", "add", self.sandbox)
        sh("ip", "-n", self.sandbox, "link", "set", "lo", "up")
        self.network_id = secrets.token_hex(32)

    def _json(self, i: int) -> str:
        return json.dumps({
            "container_id": f"{i:064x}", "container_name": f"c{i}",
            "networks": {"bench": {"interface_name": "eth0", "static_ips": [f"10.203.{i // 250}.{i % 250 + 2}"],
                                   "aliases": [f"{i:012x}"]}},
            "network_info": {"bench": {"name": "bench", "id": self.network_id, "driver": "bridge",
                                       "network_interface": "podman1",
                                       "subnets": [{"subnet": "10.203.0.0/16", "gateway": "10.203.0.1"}],
                                       "ipv6_enabled": False, "internal": False, "dns_enabled": True,
                                       "ipam_options": {"driver": "host-local"}}}})

    def _netavark(self, verb: str, i: int) -> None:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="")
        sh("nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", f"--net=/run/netns/{self.sandbox}", NETAVARK,
           "--config", "/run/containers/networks", "--rootless=false", f"--aardvark-binary={AARDVARK}", verb,
           f"/run/netns/{self.prefix}v{i}", stdin=self._json(i), env=env)

    def create(self, i: int) -> None:
        sh("ip", "netns", "add", f"{self.prefix}v{i}")
        self._netavark("setup", i)

    def remove(self, i: int) -> None:
        self._netavark("teardown", i)
        sh("ip", "netns", "delete", f"{self.prefix}v{i}")

    def close(self) -> None:
        for ns in os.listdir("/run/netns"):
            if ns.startswith(f"{self.prefix}v"):
                subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        subprocess.run(["ip", "netns", "delete", self.sandbox], capture_output=True)  # aardvark-dns goes with
        self.holder.kill()  # its tmpfs and bind mount go with its mount namespace
        self.holder.wait()
        shutil.rmtree(self.work, ignore_errors=True)


def run(tools: list, count: int, block: int) -> dict[str, tuple[list[float], list[float]]]:
    times = {tool.name: ([], []) for tool in tools}
    for start in range(0, count, block):
        for tool in tools:
            for i in range(start, min(count, start + block)):
                times[tool.name][0].append(timed(lambda t=tool, n=i: t.create(n)))
    for start in range(0, count, block):
        for tool in tools:
            for i in range(start, min(count, start + block)):
                times[tool.name][1].append(timed(lambda t=tool, n=i: t.remove(n)))
    return times


def agent_figures(netcore: Netcore) -> dict[str, float]:
    """The CLI's own share (median of 30 `agent status`), `up` of 100 containers, the agent's RSS and idle CPU."""
    share = statistics.median(timed(lambda: netcore.nc("agent", "status")) for _ in range(30))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as topology:
        topology.write("containers:\n" + "".join(f"  u{i}:\n    networks: [bench]\n" for i in range(100)))
    up = timed(lambda: netcore.nc("up", "-f", topology.name))
    netcore.nc("down", "-f", topology.name)
    os.unlink(topology.name)
    with open(os.path.join(netcore.state, "netcored.pid")) as f:
        pid = int(f.read())
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def cpu() -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    before = cpu()
    time.sleep(10)
    idle = (cpu() - before) / 10 * 1000
    return {"share": share, "up": up, "rss": rss, "idle": idle}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", default="50,500", help="comma-separated container counts (default 50,500)")
    parser.add_argument("--block", type=int, default=10, help="containers per interleaved block (default 10)")
    parser.add_argument("--skip-netavark", action="store_true")
    args = parser.parse_args()
    lines = [f"# per container, ms (median / p90), interleaved blocks of {args.block}, one run; "
             f"load average at start {os.getloadavg()[0]:.2f}", ""]
    figures = None
    for count in (int(c) for c in args.containers.split(",")):
        prefix = f"ncl{secrets.token_hex(3)}"
        tools = []
        try:
            tools.append(Netcore(prefix))
            tools.append(IpScript(prefix))
            if not args.skip_netavark:
                tools.append(Netavark(prefix))
            times = run(tools, count, args.block)
            if figures is None:
                figures = agent_figures(tools[0])
        finally:
            for tool in tools:
                tool.close()
        lines += [f"## N = {count} containers on one network", "",
                  "| tool | create median / p90 | remove median / p90 |", "|---|---|---|"]
        for name, (created, removed) in times.items():
            (cm, cp), (rm, rp) = summary(created), summary(removed)
            lines.append(f"| {name} | {cm:.1f} / {cp:.1f} | {rm:.1f} / {rp:.1f} |")
        nc = {n: (summary(c)[0], summary(r)[0]) for n, (c, r) in times.items()}
        base = nc[Netcore.name]
        for other in (n for n in nc if n != Netcore.name):
            lines.append(f"| netcore ÷ {other} | {base[0] / nc[other][0]:.2f}x | {base[1] / nc[other][1]:.2f}x |")
        lines.append("")
    if figures:
        lines += [f"CLI's own share (`netcore agent status`, median of 30): {figures['share']:.1f} ms",
                  f"`netcore up` of 100 containers: {figures['up']:.0f} ms",
                  f"netcored: RSS {figures['rss']:.1f} MiB, idle CPU {figures['idle']:.2f} ms a second"]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", f"lifecycle-{time.strftime('%Y%m%d-%H%M%S')}.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
