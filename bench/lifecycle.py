"""Per-container create and remove: netcore (its CLI through netcored) beside netavark and a plain `ip` script.

    sudo python3 bench/lifecycle.py [--containers 50,500] [--block 10] [--skip-netavark] [--compare DIR]

Issue 26's table, from one run: for each tool the same network shape (one bridge network, N containers with
an address, a default route and their /etc/netns files), created and removed in interleaved blocks of
``--block`` containers (netcore, ip, netavark, netcore, ip, ...), every container timed alone; medians and
p90 per container, wall time and CPU time (the processes the step started, and for netcore its agent's
threads too: on a shared machine the CPU time varies less than the wall time). Beside it: the CLI's own share
(a request the agent answers without work: interpreter start, imports, connect, print), `netcore up` of 100
containers (a Compose file), the agent's RSS and its idle CPU, and what the bench itself costs a process.

netcore runs as the README's users run it: ``.venv/bin/netcore`` as pip installs it for that checkout (the
native launcher its setup.py builds; for a checkout without one its ``scripts/netcore``, or the wrapper pip
writes for an entry point), with the checkout's code first on PYTHONPATH and the interpreter running this
bench; ``python -m netcore`` is timed beside it for the CLI's share. The code is byte-compiled first (a
PYTHONDONTWRITEBYTECODE environment would otherwise compile the client at every command). ``--compare DIR``
adds a second netcore, the code of another checkout (a worktree of main), to the same interleaved run:
before and after from one run.

netavark 1.4 runs as Podman runs it (`setup`/`teardown` with its JSON on stdin, its iptables firewall and
aardvark-dns), inside a sandbox namespace with a private view of its state dir and of /etc/resolv.conf
(/work/shared/notes/netavark-by-hand.md), plus `ip netns add`/`del` for the container's namespace, which
Podman makes too; the `nsenter` it runs under costs ~2.5 ms that Podman does not pay (not subtracted).
Everything lives in namespaces named ncl<hex>* made here and removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import resource
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


def sh(*argv: str, stdin: str | None = None, env: dict | None = None, cwd: str | None = None
       ) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def children_cpu() -> float:
    """CPU seconds of this process's ended children (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def task_cpu(pid: int) -> float:
    """CPU seconds of process ``pid``, every thread, ended ones too: its CPU-time clock (clock_getcpuclockid(3)'s
    clock, MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED): nanoseconds, where /proc/PID/stat counts 10 ms ticks)."""
    return time.clock_gettime((~pid << 3) | 2)


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def timed_cpu(step, agent_pid=None) -> tuple[float, float]:
    """Wall and CPU milliseconds of ``step``: the processes it started, and agent ``agent_pid``'s threads."""
    cpu = children_cpu() + (task_cpu(agent_pid) if agent_pid else 0)
    wall = timed(step)
    return wall, (children_cpu() + (task_cpu(agent_pid) if agent_pid else 0) - cpu) * 1000


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


CONSOLE_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from netcore.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""  # what pip writes as .venv/bin/netcore for an entry point (netcore.cli:main, before scripts/netcore)
PLAIN_SCRIPT = """#!{python}
import sys
from netcore.cli import main
sys.exit(main())
"""  # the same without pip's `import re`: what a launcher of netcore's own would cost a command


def launcher_of(code: str, output: str) -> bool:
    """Whether checkout ``code`` builds the native launcher (its setup.py's ``build_launcher``), built into
    ``output`` as pip would install it, running this interpreter for the Python client."""
    path = os.path.join(code, "setup.py")
    with open(path) as f:
        if "def build_launcher(" not in f.read():
            return False  # an older checkout: its setup.py calls setup() as it loads
    spec = importlib.util.spec_from_file_location("netcore_setup", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_launcher(output, sys.executable)


def label_of(code: str) -> str:
    """``netcore BRANCH COMMIT`` of the checkout ``code`` (its directory's name for a detached one)."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", code, *argv], capture_output=True, text=True).stdout.strip()
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    name = branch if branch not in ("", "HEAD") else os.path.basename(code)
    return f"netcore {name} {git('rev-parse', '--short', 'HEAD')}"


class Netcore:
    name = "netcore run / rm"

    def __init__(self, prefix: str, code: str = REPO, name: str | None = None, subnet: str = "10.201.0.0/16"):
        self.name = name or self.name
        self.code = code
        compileall.compile_dir(os.path.join(code, "netcore"), quiet=1)
        self.state = tempfile.mkdtemp(prefix="ncl-state-")
        self.script = os.path.join(self.state, "netcore")
        self.launcher = launcher_of(code, self.script)
        if not self.launcher:
            own = os.path.join(code, "scripts", "netcore")  # installed as it is, its "#!python" this interpreter's
            if os.path.exists(own):
                with open(own) as f:
                    text = f"#!{sys.executable}\n" + f.read().split("\n", 1)[1]
            else:
                text = CONSOLE_SCRIPT.format(python=sys.executable)
            with open(self.script, "w") as f:
                f.write(text)
            os.chmod(self.script, 0o755)
        self.env = dict(os.environ, NETCORE_NETNS=f"{prefix}{'nc' if code == REPO else 'nb'}",
                        NETCORE_STATE_DIR=self.state, PYTHONPATH=code + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            self.nc("network", "create", "--subnet", subnet, "bench")
        except BaseException:
            self.close()  # the agent the command started, and its namespace, go
            raise
        self.agent_pid = self.pid()

    # run from the state dir: `python -m` puts the working directory before PYTHONPATH, and the agent and dnsd
    # this starts inherit it (from a checkout's root they would import that checkout's code)
    def nc(self, *args: str) -> subprocess.CompletedProcess:
        return sh(self.script, *args, env=self.env, cwd=self.state)

    def nc_module(self, *args: str) -> subprocess.CompletedProcess:
        return sh(sys.executable, "-m", "netcore", *args, env=self.env, cwd=self.state)

    def pid(self) -> int:
        with open(os.path.join(self.state, "netcored.pid")) as f:
            return int(f.read())

    def create(self, i: int) -> None:
        self.nc("run", "--name", f"c{i}", "--net", "bench")

    def remove(self, i: int) -> None:
        self.nc("rm", f"c{i}")

    def close(self) -> None:
        subprocess.run([self.script, "purge"], env=self.env, capture_output=True, cwd=self.state)
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


Samples = tuple[list[float], list[float]]  # wall ms, CPU ms


def run(tools: list, count: int, block: int) -> dict[str, tuple[Samples, Samples]]:
    """Per tool: (create, remove), each (wall ms, CPU ms) per container."""
    times = {tool.name: (([], []), ([], [])) for tool in tools}
    for phase, step in ((0, "create"), (1, "remove")):
        for start in range(0, count, block):
            for tool in tools:
                for i in range(start, min(count, start + block)):
                    wall, cpu = timed_cpu(lambda t=tool, n=i, s=step: getattr(t, s)(n),
                                          getattr(tool, "agent_pid", None))
                    times[tool.name][phase][0].append(wall)
                    times[tool.name][phase][1].append(cpu)
    return times


def compose_file(count: int) -> str:
    """A Compose file of ``count`` containers on the existing network ``bench`` (netcore's topology format)."""
    services = "".join(f"  u{i}:\n    container_name: u{i}\n    networks: [bench]\n" for i in range(count))
    return f"name: ncl\nservices:\n{services}networks:\n  bench:\n    external: true\n"


def agent_figures(netcores: list[Netcore], rounds: int = 30) -> dict[str, dict[str, float]]:
    """Per netcore: the CLI's own share (median of ``rounds`` `ps` of no container, wall and CPU: as the command
    pip installs, the native launcher where the checkout builds one, as `python -m netcore`, and as the Python
    script without pip's `import re`), beside a bare interpreter's
    start and what the bench costs a process it starts (``/bin/true``); `up` and `down` of 100 containers; the
    agent's RSS and its idle CPU. Interleaved: every round runs each form of each netcore once, the ups run
    one after the other, then the downs, and the idle CPU of every agent is measured over the same 10 s."""
    forms = {"python": lambda: sh(sys.executable, "-c", "pass"),
             "python_isolated": lambda: sh(sys.executable, "-I", "-S", "-c", "pass"),
             "spawn": lambda: sh("/bin/true")}
    for netcore in netcores:
        plain = os.path.join(netcore.state, "netcore-plain")
        with open(plain, "w") as f:
            f.write(PLAIN_SCRIPT.format(python=sys.executable))
        os.chmod(plain, 0o755)
        forms[f"{netcore.name}/share"] = lambda n=netcore: n.nc("ps")
        forms[f"{netcore.name}/share_m"] = lambda n=netcore: n.nc_module("ps")
        forms[f"{netcore.name}/share_plain"] = lambda n=netcore, p=plain: sh(p, "ps", env=n.env, cwd=n.state)
    samples: dict[str, list[tuple[float, float]]] = {key: [] for key in forms}
    for _ in range(rounds):
        for key, step in forms.items():
            samples[key].append(timed_cpu(step))
    figures: dict[str, dict[str, float]] = {}
    for netcore in netcores:
        f = figures[netcore.name] = {"launcher": netcore.launcher}
        for key, found in samples.items():
            name = key.split("/")[-1]
            if "/" not in key or key.startswith(f"{netcore.name}/"):
                f[name] = statistics.median(w for w, _ in found)
                f[f"{name}_cpu"] = statistics.median(c for _, c in found)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as compose:
        compose.write(compose_file(100))
    for verb in ("up", "down"):
        for netcore in netcores:
            figures[netcore.name][verb], figures[netcore.name][f"{verb}_cpu"] = timed_cpu(
                lambda n=netcore, v=verb: n.nc(v, "-f", compose.name), netcore.pid())
    os.unlink(compose.name)
    before = {}
    for netcore in netcores:
        with open(f"/proc/{netcore.pid()}/status") as f:
            figures[netcore.name]["rss"] = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        before[netcore.name] = task_cpu(netcore.pid())
    time.sleep(10)
    for netcore in netcores:
        figures[netcore.name]["idle"] = (task_cpu(netcore.pid()) - before[netcore.name]) / 10 * 1000
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", default="50,500", help="comma-separated container counts (default 50,500)")
    parser.add_argument("--block", type=int, default=10, help="containers per interleaved block (default 10)")
    parser.add_argument("--skip-netavark", action="store_true")
    parser.add_argument("--compare", metavar="DIR", help="another checkout's netcore in the same run (before/after)")
    args = parser.parse_args()
    this = label_of(REPO) if args.compare else Netcore.name
    lines = [f"# per container, ms (median / p90), interleaved blocks of {args.block}, one run; "
             f"load average at start {os.getloadavg()[0]:.2f}", ""]
    figures = {}
    for count in (int(c) for c in args.containers.split(",")):
        prefix = f"ncl{secrets.token_hex(3)}"
        tools = []
        try:
            tools.append(Netcore(prefix, name=this))
            if args.compare:
                tools.append(Netcore(prefix, os.path.abspath(args.compare), label_of(args.compare),
                                     "10.204.0.0/16"))
            tools.append(IpScript(prefix))
            if not args.skip_netavark:
                tools.append(Netavark(prefix))
            times = run(tools, count, args.block)
            if not figures:
                figures = agent_figures(tools[:2 if args.compare else 1])
        finally:
            for tool in tools:
                tool.close()
        lines += [f"## N = {count} containers on one network", "",
                  "| tool | create median / p90 | remove median / p90 | create CPU median | remove CPU median |",
                  "|---|---|---|---|---|"]
        for name, (created, removed) in times.items():
            (cm, cp), (rm, rp) = summary(created[0]), summary(removed[0])
            lines.append(f"| {name} | {cm:.1f} / {cp:.1f} | {rm:.1f} / {rp:.1f} | {summary(created[1])[0]:.1f} | "
                         f"{summary(removed[1])[0]:.1f} |")
        medians = {n: [summary(samples)[0] for phase in both for samples in phase] for n, both in times.items()}
        for mine in (n for n in medians if n.startswith("netcore")):
            for other in (n for n in medians if n != mine and (n != this or not args.compare)):
                ratios = [a / b for a, b in zip(medians[mine], medians[other], strict=True)]
                lines.append(f"| {mine} ÷ {other} | {ratios[0]:.2f}x | {ratios[2]:.2f}x | {ratios[1]:.2f}x | "
                             f"{ratios[3]:.2f}x |")
        lines.append("")
    lines.append("(CPU: the processes a step started, user + system; netcore's includes its agent's threads; dnsd's "
                 "and aardvark-dns's own are left out of both)")
    lines.append("")
    for name, f in figures.items():
        lines += [f"{name}:",
                  f"- CLI's own share (`netcore ps` of no container, median of 30, through "
                  f"{'the native launcher' if f['launcher'] else 'the Python script'}): {f['share']:.1f} ms, CPU "
                  f"{f['share_cpu']:.1f} ms (`python -m netcore`: {f['share_m']:.1f} ms, CPU "
                  f"{f['share_m_cpu']:.1f} ms; the Python script without pip's `import re`: {f['share_plain']:.1f} "
                  f"ms, CPU {f['share_plain_cpu']:.1f} ms)",
                  f"- beside it: `python -c pass` {f['python']:.1f} ms (CPU {f['python_cpu']:.1f}), `python -I -S -c "
                  f"pass` {f['python_isolated']:.1f} ms (CPU {f['python_isolated_cpu']:.1f}), `/bin/true` through the "
                  f"bench {f['spawn']:.1f} ms (CPU {f['spawn_cpu']:.1f})",
                  f"- `netcore up` of 100 containers: {f['up']:.0f} ms (CPU {f['up_cpu']:.0f} ms, agent included); "
                  f"`netcore down`: {f['down']:.0f} ms (CPU {f['down_cpu']:.0f} ms)",
                  f"- netcored: RSS {f['rss']:.1f} MiB, idle CPU {f['idle']:.3f} ms a second", ""]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.join(REPO, "bench", "results"), exist_ok=True)
    with open(os.path.join(REPO, "bench", "results", f"lifecycle-{time.strftime('%Y%m%d-%H%M%S')}.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    from _signals import exit_on_signals  # a killed run still removes what it made

    exit_on_signals()
    sys.exit(main())
