"""The import rule of docs/ARCHITECTURE.md, checked over the source with ``ast``: which part of netcore and which
layer of dnsd may import which, pure modules import no I/O, no import circle, and the thin client imports nothing
heavy."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from functools import cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("netcore", "dnsd")

# netcore's parts, lowest first; a module belongs to the first part whose pattern matches its name
NETCORE_PARTS = [
    ("base", r"netcore\.(errors|model|ipam|requests|ports|kernel\.names|dnsd_protocol|system(\..*)?)$"),
    ("kernel", r"netcore\.kernel(\..*)?$"),
    ("store", r"netcore\.store$"),
    ("network", r"netcore\.network(\..*)?$"),
    ("firewall", r"netcore\.firewall(\..*)?$"),
    ("ports", r"netcore\.ports\..*$"),
    ("services", r"netcore\.(services(\..*)?|dnsd_protocol\..*)$"),
    ("cluster", r"netcore\.cluster(\..*)?$"),
    ("compose", r"netcore\.compose(\..*)?$"),
    ("engine", r"netcore\.engine(\..*)?$"),
    ("front", r"netcore\.cli\.(commands|compose|cluster|handlers|views|formatting)$"),
    ("agent", r"netcore\.agent\.(server|dnsd|processes|__main__)$"),
    ("client", r"netcore(\.__main__|\.cli|\.cli\.parser|\.agent|\.agent\.client|\.agent\.protocol)?$"),
]
# what each part may import besides itself
NETCORE_MAY_IMPORT = {
    "base": set(),
    "kernel": {"base"},
    "store": {"base"},
    "network": {"base", "kernel"},
    "firewall": {"base", "kernel"},
    "ports": {"base", "kernel"},
    "services": {"base"},
    "cluster": {"base", "kernel"},
    "compose": {"base"},
    "engine": {"base", "kernel", "store", "network", "firewall", "ports", "services", "cluster"},
    "front": {"base", "kernel", "store", "network", "firewall", "ports", "services", "cluster", "compose",
              "engine"},
    "agent": {"base", "kernel", "store", "network", "firewall", "ports", "services", "cluster", "compose",
              "engine", "front", "client"},
    "client": {"base", "kernel"},  # the thin CLI: its light part of kernel is netcore.kernel.sandbox (exec)
}
# dnsd may use these of netcore, and nothing else (netcore never imports dnsd)
DNSD_MAY_IMPORT = re.compile(r"netcore(\.(errors|model|dnsd_protocol(\..*)?|system(\..*)?|store))?$")
# dnsd's layers, lowest first; a module belongs to the first layer whose pattern matches its name
DNSD_LAYERS = [
    ("core", r"dnsd\.core(\..*)?$"),  # pure, sans-IO: wire, records, snapshot, builder, dialect, answer, stats, config
    ("sources", r"dnsd\.sources(\..*)?$"),  # record sources: Podman's config directory, the CNI plugin's store
    ("upstream", r"dnsd\.upstream(\..*)?$"),  # forwarding and its cache
    ("io", r"dnsd\.io(\..*)?$"),  # the sockets: listeners, UDP, TCP
    ("ops", r"dnsd\.ops(\..*)?$"),  # metrics, the query log, the control socket
    ("shell", r"dnsd\.(server|reload)$"),  # the asyncio server that wires them, and its reloads
    ("app", r"dnsd\.app$"),  # the one assembly: a server of a config and a record source
    ("entry", r"dnsd(\.__main__|\.aardvark|\.supervise|\.cni_plugin|\.cni(\..*)?)?$"),  # the commands
]
# what each layer may import besides itself
DNSD_LAYER_MAY_IMPORT = {
    "core": set(),
    "sources": {"core"},
    "upstream": {"core"},
    "io": {"core", "upstream"},  # TCP hands a forwarded query to the upstream path's Resolver
    "ops": {"core"},
    "shell": {"core", "upstream", "io", "ops"},  # never a source: it is given one
    "app": {"core", "upstream", "io", "ops", "shell"},
    "entry": {"core", "sources", "upstream", "io", "ops", "shell", "app"},
}
# of netcore, the core uses the pure records and errors alone
DNSD_CORE_MAY_IMPORT = re.compile(r"netcore\.(errors|model)$")
DNSD_CORE_EXCEPTIONS = {("dnsd.core.snapshot", "socket"), ("dnsd.core.builder", "socket")}  # inet_pton/inet_ntop
# what the CNI plugin passes through on every call: packages whose __init__ must import nothing
DNSD_EMPTY_PACKAGES = ("dnsd", "dnsd.cni", "dnsd.sources")
# decide, never do I/O: no module of these imports one that talks to the kernel, files or sockets
PURE = re.compile(r"netcore\.(errors|model|ipam|requests|ports|kernel\.names|firewall|firewall\.nftables|"
                  r"services\.resolvconf|cli\.(views|formatting)|compose\.(document|interpolate|merge|model|plan|"
                  r"errors)|cluster\.(keys|dataplane))$")
IO_MODULES = {"subprocess", "socket", "sqlite3", "fcntl", "ctypes", "threading", "asyncio", "selectors", "pyroute2"}
PURE_EXCEPTIONS = {("netcore.ipam", "socket")}  # inet_pton: addresses as integers, 20x faster than ipaddress
LIGHT_CLIENT = ["netcore.cli", "netcore.cli.parser", "netcore.agent.client", "netcore.agent.protocol"]
HEAVY = ("pyroute2", "dnslib", "sqlite3", "yaml", "netcore.engine", "netcore.store", "netcore.kernel.netlink")


@cache
def modules() -> dict[str, str]:
    """Every module of the two packages: dotted name -> file."""
    found = {}
    for package in PACKAGES:
        for directory, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                    found[dotted] = path
    return found


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


@cache
def imports(module: str, top_level_only: bool = False) -> frozenset[str]:
    """The modules of the two packages and the other top-level packages ``module`` imports (``if TYPE_CHECKING``
    blocks left out; with ``top_level_only``, imports inside functions too)."""
    path = modules()[module]
    with open(path) as source:
        tree = ast.parse(source.read())
    found: set[str] = set()

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import) and not (top_level_only and inner):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and not (top_level_only and inner):
                if child.level:
                    base = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
                    base = base[:len(base) - child.level + 1]
                    source = ".".join(base + ([child.module] if child.module else []))
                else:
                    source = child.module or ""
                for alias in child.names:
                    full = f"{source}.{alias.name}"
                    found.add(full if full in modules() else source)
            visit(child, inner)

    visit(tree, False)
    return frozenset(found)


def part(module: str) -> str:
    return next(name for name, pattern in NETCORE_PARTS if re.match(pattern, module))


def test_every_netcore_module_belongs_to_a_part():
    assert [m for m in modules() if m.startswith("netcore") and not any(
        re.match(pattern, m) for _, pattern in NETCORE_PARTS)] == []


def test_netcore_imports_go_one_way():
    wrong = []
    for module in sorted(m for m in modules() if m.startswith("netcore")):
        for target in imports(module):
            if target.startswith("dnsd"):
                wrong.append(f"{module} -> {target}: netcore never imports dnsd")
            elif target.startswith("netcore.") and target in modules() and part(target) != part(module) \
                    and part(target) not in NETCORE_MAY_IMPORT[part(module)]:
                wrong.append(f"{module} ({part(module)}) -> {target} ({part(target)})")
    assert wrong == []


def test_firewall_and_network_do_not_import_each_other():
    netcore = [m for m in modules() if m.startswith("netcore")]
    assert [(m, t) for m in netcore for t in imports(m)
            if t in netcore and {part(m), part(t)} == {"firewall", "network"}] == []


def test_only_the_agent_and_its_front_ends_import_the_engine():
    importers = {m for m in modules() if any(t == "netcore.engine" or t.startswith("netcore.engine.")
                                             for t in imports(m))}
    assert {m for m in importers if not m.startswith("netcore.engine")} <= {
        "netcore.agent.server", "netcore.agent.processes", "netcore.cli.commands", "netcore.cli.compose",
        "netcore.cli.cluster"}


def layer(module: str) -> str:
    return next(name for name, pattern in DNSD_LAYERS if re.match(pattern, module))


def test_every_dnsd_module_belongs_to_a_layer():
    assert [m for m in modules() if m.startswith("dnsd") and not any(
        re.match(pattern, m) for _, pattern in DNSD_LAYERS)] == []


def test_dnsd_imports_go_down_its_layers():
    wrong = []
    for module in sorted(m for m in modules() if m.startswith("dnsd")):
        for target in imports(module):
            if target.startswith("dnsd") and target in modules() and layer(target) != layer(module) \
                    and layer(target) not in DNSD_LAYER_MAY_IMPORT[layer(module)]:
                wrong.append(f"{module} ({layer(module)}) -> {target} ({layer(target)})")
    assert wrong == []


def test_dnsd_core_does_no_io():
    """The answering core imports no module that talks to the kernel, files or sockets, and of netcore only its
    pure records and errors: it decides, the layers above do."""
    wrong = []
    for module in (m for m in modules() if m.startswith("dnsd.core")):
        for target in imports(module):
            if (module, target) in DNSD_CORE_EXCEPTIONS:
                continue
            if target.split(".")[0] in IO_MODULES or (target.startswith("netcore")
                                                       and not DNSD_CORE_MAY_IMPORT.match(target)):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_packages_the_cni_plugin_passes_through_import_nothing():
    assert {package: sorted(imports(package)) for package in DNSD_EMPTY_PACKAGES} == {
        package: [] for package in DNSD_EMPTY_PACKAGES}


def test_dnsd_uses_only_the_parts_of_netcore_it_shares():
    wrong = [f"{m} -> {t}" for m in modules() if m.startswith("dnsd") for t in imports(m)
             if t.startswith("netcore") and not DNSD_MAY_IMPORT.match(t)]
    assert wrong == []


def test_pure_modules_import_no_io():
    wrong = []
    for module in (m for m in modules() if PURE.match(m)):
        for target in imports(module):
            if (module, target) in PURE_EXCEPTIONS:
                continue
            if target.split(".")[0] in IO_MODULES or (target in modules() and not PURE.match(target)
                                                      and not target.startswith("netcore.system")):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph`` (module -> modules it imports), a package's __init__ counted as imported
    with each of its modules: it runs before them."""
    graph = {module: set(targets) for module, targets in graph.items()}
    for module in list(graph):
        for target in list(graph[module]):
            parent = target.rpartition(".")[0]
            while parent and parent != module and not module.startswith(parent + "."):
                graph[module].add(parent)
                parent = parent.rpartition(".")[0]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph):
        if module not in index:
            connect(module)
    return found


def test_no_import_circle():
    assert circles({m: {t for t in imports(m, top_level_only=True) if t in modules() and t != m}
                    for m in modules()}) == []


def test_no_dnsd_import_circle_even_through_imports_inside_functions():
    """dnsd.aardvark imported dnsd.__main__ (its port argument, make_server), which imported dnsd.aardvark inside
    a function (``dnsd podman-helper-dir``): a circle the loading order alone kept from failing (issue 25)."""
    assert circles({m: {t for t in imports(m) if t in modules() and t != m}
                    for m in modules() if m.startswith("dnsd")}) == []


def test_the_thin_client_imports_nothing_heavy():
    """What `netcore` loads to parse a command and reach the agent (run in a fresh interpreter)."""
    code = ("import sys\n"
            + "".join(f"import {m}\n" for m in LIGHT_CLIENT)
            + "from netcore.cli.parser import build_parser\n"
            + "build_parser().parse_args(['run', '--name', 'web', '--net', 'app', '-p', '8080:80'])\n"
            + f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


CLIENT_NEVER = ("dataclasses", "inspect", "typing", "socket", "selectors", "shutil", "subprocess")


def test_a_command_loads_only_the_light_part_of_the_standard_library():
    """What `netcore run` without -p loads to parse its one command and reach the agent: none of these, which
    would cost a command more than its round trip (dataclasses pulls in inspect, ast and dis; socket its enums
    and selectors; shutil bz2 and lzma; subprocess only starts an agent)."""
    code = ("import sys\n"
            "import netcore.cli\n"
            "from netcore.cli.parser import build_parser, command_word\n"
            "argv = ['--netns', 'gw', 'run', '--name', 'web', '--net', 'app']\n"
            "build_parser(command_word(argv)).parse_args(argv)\n"
            "import netcore.agent.client\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {CLIENT_NEVER!r}))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


PARSING = ("argparse", "json", "re", "gettext", "locale")


def test_a_command_line_sent_to_the_agent_costs_no_parser():
    """What `netcore ps` loads when an agent answers: the command line goes as it is (netcore.cli.command_line),
    the reply is read by json's C scanner: no argparse, and none of json, re, gettext and locale under it."""
    code = ("import sys\n"
            "import netcore.cli\n"
            "from netcore.agent.client import AgentClient\n"
            "from netcore.agent.protocol import Request, decode_reply\n"
            "state_dir, netns, verb = netcore.cli.command_line(['--netns', 'gw', 'ps', '-a'])\n"
            "Request('', {}, netns, False, ['--netns', 'gw', 'ps', '-a']).encode()\n"
            "decode_reply(b'{\"exit\":0,\"agent\":{\"pid\":1}}')\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {(*PARSING, *CLIENT_NEVER)!r}))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout
