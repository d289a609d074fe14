"""``netcore compose ...`` and ``netcore up/down -f``: Compose files applied through the engine (issue 28).

The reading and planning are pure (netcore.compose: files, YAML 1.2, interpolation, schema, merge, the
project model, ``plan.plan_up``/``plan_down``); these handlers run a plan through the engine one object at a
time, in the plan's order (netcore.engine.Engine: ``create_network``, ``run``, ``start``, ``stop``,
``remove_containers``, ``remove_network``), all in one engine action: its lock and reconciliation once, and
what follows (dnsd synced, the firewall applied) once at its end, not once an object; and print Compose's
progress line for each object as it is done (``Network shop_default  Created``, ``Container shop-web-1
Started``), streamed to the client as they come. The client sent its working directory and environment (the
agent reads the files as ``docker compose`` would in that shell) and, for ``-f -``, standard input.

What exists is read as ``plan.Existing`` (every network and container with its labels); the project owns
what carries its ``com.docker.compose.project`` label, and nothing else is touched. A failure part way is
one line naming the objects made before it; every object is whole (the engine takes a failed one back) and
labelled, so a second ``up`` completes the project and ``down`` removes it.

A main process that cannot start (a service's ``command`` names a program of its image, which netcore does
not apply) leaves its container ``Created`` with the reason, and a warning: the networks and names are
built regardless.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TextIO

import yaml

from netcore.cli import commands, formatting, views
from netcore.compose.errors import ComposeError
from netcore.compose.files import ProjectOptions
from netcore.compose.model import Project
from netcore.compose.plan import (
    CONFIG_FILES_LABEL,
    CONTAINER,
    KEEP,
    NETWORK,
    PROJECT_LABEL,
    RECREATE,
    REMOVE,
    SERVICE_LABEL,
    Action,
    Existing,
    plan_down,
    plan_up,
)
from netcore.engine import Engine
from netcore.engine.context import StopTarget
from netcore.errors import INTERRUPTED, NetcoreError
from netcore.model import PROCESS_RUNNING, Container, removal_order

NO_FILE = "no Compose file found"  # files.resolve's refusal when none is given or found


def _options(args: argparse.Namespace) -> ProjectOptions:
    return ProjectOptions(tuple(args.files or ()), getattr(args, "project_name", None),
                          getattr(args, "project_directory", None), tuple(getattr(args, "env_files", None) or ()))


def load(args: argparse.Namespace):
    """The project and merged document the request's files describe, in the client's directory and
    environment (ComposeError, one line, for anything refused). The loader (with jsonschema and the Compose
    schema, ~75 ms of imports) is imported here, at the first Compose command, not at every netcored start."""
    from netcore.compose.loader import load_with_document

    stdin = getattr(args, "stdin", None)
    return load_with_document(_options(args), args.cwd, args.environ,
                              (lambda: stdin) if stdin is not None else None)


def _warn(out: TextIO, line: str, engine: Engine) -> None:
    """A warning on the client's stderr now, in order with the progress lines (the agent's reply streams it);
    without a streaming reply (a test's StringIO), with the command's other warnings at its end."""
    send = getattr(out, "error_line", None)
    if send is not None:
        send(f"warning: {line}")
    else:
        engine.warnings.append(line)


def _read_project(args: argparse.Namespace, out: TextIO, engine: Engine) -> Project:
    project, _ = load(args)
    for warning in project.warnings:
        _warn(out, warning, engine)
    line = project.not_applied_line()
    if line:
        _warn(out, line, engine)
    return project


def existing(engine: Engine) -> list[Existing]:
    """Every network and container as the plans read them: name, labels, and a container's networks."""
    store = engine.store
    networks = {n.id: n for n in store.networks()}
    found = [Existing(NETWORK, n.name, dict(n.labels)) for n in networks.values()]
    for container in store.containers():
        names = tuple(networks[e.network_id].name for e in store.endpoints_of_container(container.id))
        found.append(Existing(CONTAINER, container.name, dict(container.labels), names))
    return found


def refuse_foreign_sharers(engine: Engine, project: str, names: list[str]) -> None:
    """ComposeError, before anything is changed, when a container of the project that is to be removed has
    its namespace shared by a container outside the project (``run --net container:NAME`` by hand): removing
    it would take that one along, and nothing outside the project is touched."""
    problems = []
    for name in names:
        container = engine.store.find_container(name)
        foreign = sorted(d.name for d in engine.sharing(container) if d.labels.get(PROJECT_LABEL) != project) \
            if container is not None else []
        if foreign:
            problems.append(f"container {name} shares its namespace with {', '.join(foreign)}, which is not the "
                            "project's")
    if problems:
        raise ComposeError(f"project {project}: {'; '.join(problems)}: remove it first (netcore rm NAME); nothing "
                           "was created or removed")


def _line(out: TextIO, kind: str, name: str, word: str) -> None:
    print(f"{kind.capitalize()} {name}  {word}", file=out, flush=True)


# -- up -----------------------------------------------------------------------------------------------------


def compose_up(engine: Engine, args: argparse.Namespace, out: TextIO) -> int | dict:
    """``compose up [-d] [--remove-orphans]``: the plan (plan_up) run through the engine, converging: what
    changed recreated, what did not kept (its processes running on), one progress line per object. Without
    ``-d`` the project's main processes' output follows, prefixed by container, until they end, the client
    asks for the end (Ctrl-C: they are stopped, a line each, exit 130, as Docker Compose's attached ``up``
    ends) or goes away (they are stopped too)."""
    project = _read_project(args, out, engine)
    plan = plan_up(project, existing(engine), getattr(args, "remove_orphans", False))
    refuse_foreign_sharers(engine, project.name, [a.name for a in plan.teardown if a.kind == CONTAINER])
    for warning in plan.warnings:
        _warn(out, warning, engine)
    made: list[str] = []
    failed = None
    with engine.action():  # one action for the plan: what follows (dnsd, firewall) once, after the last object
        try:
            for action in plan.teardown:
                _take_down(engine, action, out, getattr(args, "timeout", 10))
            if plan.teardown:  # the host ports of what was taken down freed, before what replaces it takes them
                engine.follower.apply_firewall()
            for action in plan.build:
                _build(engine, action, out, made)
        except NetcoreError as err:
            failed = err  # raised once what was made before it has been followed through (the action ends)
    if failed is not None:
        before = f"made before it: {', '.join(made)}" if made else "nothing was made before it"
        raise NetcoreError(f"project {project.name}: {failed}; {before}; `netcore compose up` again completes the "
                           "project, `netcore compose down` removes it", exit_code=failed.exit_code) from None
    if getattr(args, "detach", True):
        return 0
    return _attach(engine, project.name)


def _take_down(engine: Engine, action: Action, out: TextIO, grace: float) -> None:
    if action.kind == CONTAINER:
        engine.remove_containers([action.name], force=True, grace=grace)
        if action.verb == REMOVE:
            _line(out, CONTAINER, action.name, "Removed")
    else:
        engine.remove_network(action.name)
        if action.verb == REMOVE:
            _line(out, NETWORK, action.name, "Removed")


def _build(engine: Engine, action: Action, out: TextIO, made: list[str]) -> None:
    if action.verb == KEEP:
        _line(out, action.kind, action.name, "Running")
        return
    word = "Recreated" if action.verb == RECREATE else "Created"
    if action.kind == NETWORK:
        engine.create_network(action.spec.request())
        made.append(f"network {action.name}")
        _line(out, NETWORK, action.name, word)
        return
    request = action.spec.request()
    container = engine.run(request, start=False)
    made.append(f"container {action.name}")
    _line(out, CONTAINER, action.name, word)
    if request.command:
        try:
            engine.main.start(container)  # engine.start, but under the lock compose_up's action holds already
        except NetcoreError as err:
            _warn(out, f"container {action.name}: its main process did not start: {err} (the container is "
                       "kept, Created; `netcore logs` shows why)", engine)
            return
        _line(out, CONTAINER, action.name, "Started")


def _attach(engine: Engine, project: str) -> int | dict:
    """The project's running main processes followed (``up`` without ``-d``)."""
    store = engine.store
    followed = []
    for container in _project_containers(engine, project):
        process = store.process(container.id)
        if process is not None and process.status == PROCESS_RUNNING:
            followed.append((container.name, engine.processes.log_path(container.id), process.pid,
                             process.start_ticks))
    if not followed:
        return 0
    supervisor = engine.processes
    targets = [StopTarget(pid, ticks) for _, _, pid, ticks in followed]

    def stream(reply) -> int:
        width = max(len(name) for name, *_ in followed)
        offsets = {path: 0 for _, path, *_ in followed}
        reply.interruptible(f"Attaching to {', '.join(name for name, *_ in followed)}\n")
        while True:
            alive = [supervisor.alive(pid, ticks) for _, _, pid, ticks in followed]
            for name, path, *_ in followed:
                text, offsets[path] = _new_text(path, offsets[path])
                for line in text.splitlines():
                    reply.write(f"{name.ljust(width)}  | {line}\n")
            if not any(alive):
                return 0
            if reply.peer_closed() or reply.interrupted:
                supervisor.stop(targets, 10.0)  # Compose's ^C: the attached services are stopped
                for (name, *_), running in zip(followed, alive, strict=True):
                    if running:
                        _line(reply, CONTAINER, name, "Stopped")
                return INTERRUPTED
            time.sleep(commands.FOLLOW_POLL)

    return {"exit": 0, "stream": stream}


def _new_text(path: str, offset: int) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            if f.tell() < offset:
                offset = 0
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", offset
    end = data.rfind(b"\n") + 1  # whole lines only: the rest comes with the next look
    return data[:end].decode(errors="replace"), offset + end


# -- down ---------------------------------------------------------------------------------------------------


def _project_for_down(args: argparse.Namespace, out: TextIO, engine: Engine) -> tuple[str, Project | None]:
    """The project ``down`` removes: the files' (or ``-p`` over them), or with ``-p`` and no file found, every
    object of that project (Compose's ``down -p NAME`` anywhere)."""
    try:
        project = _read_project(args, out, engine)
    except ComposeError as err:
        if NO_FILE in str(err) and getattr(args, "project_name", None):
            return args.project_name, None
        raise
    return project.name, project


def compose_down(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``compose down [--remove-orphans] [-t N]``: the project's containers stopped together (SIGTERM,
    SIGKILL after N seconds), then removed, then its networks (plan_down): exactly what carries its label."""
    name, project = _project_for_down(args, out, engine)
    plan = plan_down(name, existing(engine), project, getattr(args, "remove_orphans", False))
    for warning in plan.warnings:
        _warn(out, warning, engine)
    containers = [a.name for a in plan.teardown if a.kind == CONTAINER]
    refuse_foreign_sharers(engine, name, containers)
    records = removal_order(engine.store.container(c) for c in containers)  # who shares a namespace goes first
    teardown = [Action(REMOVE, CONTAINER, c.name) for c in records] + [a for a in plan.teardown if a.kind == NETWORK]
    removed: list[str] = []
    failed = None
    with engine.action():  # one action: dnsd synced and the firewall applied once, after the last removal
        try:
            if records:
                for container in engine.main.stop(records, getattr(args, "timeout", 10)):
                    _line(out, CONTAINER, container.name, "Stopped")
            for action in teardown:
                if action.kind == CONTAINER:
                    engine.remove_containers([action.name], force=True, grace=0)
                else:
                    engine.remove_network(action.name)
                removed.append(f"{action.kind} {action.name}")
                _line(out, action.kind, action.name, "Removed")
        except NetcoreError as err:
            failed = err
    if failed is not None:
        before = f"removed before it: {', '.join(removed)}" if removed else "nothing was removed before it"
        raise NetcoreError(f"project {name}: {failed}; {before}; `netcore compose down` again removes the rest",
                           exit_code=failed.exit_code) from None
    return 0


LEGACY_HINT = ("; netcore's topology files are Compose files now: write services: for containers:, "
               "ipam: {config: [{subnet: ...}]} for subnet:, ipv4_address: for ip: (docs/compose.md)")


def _legacy(handler):
    """``netcore up/down -f FILE``: the Compose handler, with a hint for a file in the old topology format."""
    def run(engine: Engine, args: argparse.Namespace, out: TextIO):
        try:
            return handler(engine, args, out)
        except ComposeError as err:
            if "'containers'" in str(err):
                raise ComposeError(f"{err}{LEGACY_HINT}") from None
            raise
    return run


def up(engine: Engine, args: argparse.Namespace, out: TextIO) -> int | dict:
    """``netcore up -f FILE``: netcore's topology files are Compose files; ``compose -f FILE up -d``."""
    args.detach = True
    return _legacy(compose_up)(engine, args, out)


def down(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``netcore down -f FILE``: ``compose -f FILE down``."""
    return _legacy(compose_down)(engine, args, out)


# -- reads --------------------------------------------------------------------------------------------------


def _project_name(args: argparse.Namespace, engine: Engine) -> str:
    if getattr(args, "project_name", None):
        return args.project_name
    return load(args)[0].name


def _project_containers(engine: Engine, project: str) -> list[Container]:
    return [c for c in engine.store.containers()
            if c.labels.get(PROJECT_LABEL) == project and c.labels.get("com.docker.compose.oneoff") != "True"]


COMPOSE_PS_TABLE = "table {{.Name}}\t{{.Service}}\t{{.Status}}\t{{.Ports}}"


def compose_ps(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``compose ps [-a] [-q] [--format F]``: the project's containers (running ones unless ``-a``)."""
    name = _project_name(args, engine)
    mine = {c.id for c in _project_containers(engine, name)}
    containers = [c for c in commands.listed_containers(engine, getattr(args, "all", False), {}) if c.id in mine]
    if getattr(args, "quiet", False):
        for c in containers:
            print(c.id, file=out)
        return 0
    networks = {n.id: n for n in engine.store.networks()}
    now = engine.ctx.clock.now()
    rows = []
    for container in containers:
        row = commands.ps_row(engine, container, False, now, networks)
        rows.append({**row, "Name": container.name, "Service": container.labels.get(SERVICE_LABEL, ""),
                     "Project": name})
    print(formatting.render(getattr(args, "format", None), rows, COMPOSE_PS_TABLE), file=out)
    return 0


def compose_config(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``compose config [--services|--networks|-q]``: the files merged and interpolated, as YAML (the
    project's name first), or only the services' names or the networks' keys; ``-q`` only checks."""
    project, document = load(args)
    for warning in project.warnings:
        _warn(out, warning, engine)
    if getattr(args, "quiet", False):
        return 0
    if getattr(args, "services", False):
        print("\n".join(s.name for s in project.services), file=out)
        return 0
    if getattr(args, "networks", False):
        print("\n".join(n.key for n in project.networks), file=out)
        return 0
    data = {"name": project.name, **{k: v for k, v in document.data.items() if k != "name"}}
    print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip(), file=out)
    return 0


def compose_ls(engine: Engine, args: argparse.Namespace, out: TextIO) -> int:
    """``compose ls [-a] [-q] [--format F]``: every project with its containers' states (``running(2),
    exited(1)``) and its files; without ``-a`` only projects with a running container, as Compose."""
    projects: dict[str, dict] = {}
    for network in engine.store.networks():
        project = network.labels.get(PROJECT_LABEL)
        if project:
            projects.setdefault(project, {"states": {}, "files": ""})
    for container in engine.store.containers():
        project = container.labels.get(PROJECT_LABEL)
        if not project:
            continue
        entry = projects.setdefault(project, {"states": {}, "files": ""})
        state = views.state(container, engine.store.process(container.id))
        entry["states"][state] = entry["states"].get(state, 0) + 1
        entry["files"] = entry["files"] or container.labels.get(CONFIG_FILES_LABEL, "")
    rows = []
    for name in sorted(projects):
        states = projects[name]["states"]
        if not getattr(args, "all", False) and not states.get("running"):
            continue
        rows.append({"Name": name, "Status": ", ".join(f"{s}({n})" for s, n in sorted(states.items())),
                     "ConfigFiles": projects[name]["files"]})
    if getattr(args, "quiet", False):
        text = "\n".join(row["Name"] for row in rows)
    else:
        text = formatting.render(getattr(args, "format", None), rows, "table {{.Name}}\t{{.Status}}\t"
                                 "{{.ConfigFiles}}", {"ConfigFiles": "CONFIG FILES"})
    if text:
        print(text, file=out)
    return 0


HANDLERS: dict[str, Callable] = {
    "compose up": compose_up, "compose down": compose_down, "compose ps": compose_ps,
    "compose config": compose_config, "compose ls": compose_ls, "up": up, "down": down,
}
READ_ONLY = frozenset({"compose ps", "compose ls", "compose config"})
