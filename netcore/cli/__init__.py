"""The `netcore` command: a thin client of netcored, the state dir's agent (netcore.agent).

It parses the command line (netcore.cli.parser), sends the command as one request to the agent (starting
one when none answers), prints what comes back, and exits with the command's status. What must happen in
the user's own terminal it does itself: ``exec`` and ``run -- CMD`` run the command inside the container's
namespace (netcore.sandbox.run_in). It imports nothing heavy: no pyroute2, no store, no engine.

When an agent answers, most commands are sent as their command line instead, for the agent to parse with
the same parser: argparse, with ``re``, ``gettext`` and ``json`` under it, would be most of what a command
costs the client (netcore.agent.protocol). A command line the agent does not take (a usage error, ``-h``)
comes back to be parsed here, which says why as before; a usage error never starts an agent.

Errors are one line on stderr and a non-zero exit: 2 for a usage error, the error's own code otherwise;
``run ... -- CMD`` exits 125 for netcore's own failure and with the command's status otherwise (Docker's
convention). ``NETCORE_DEBUG=1`` shows an unexpected error's traceback instead. A reader that goes away
(``netcore ps | head``) ends the command quietly, with 141 (128 + SIGPIPE) as a program killed by it.

A Compose command sends the client's working directory and environment along (the agent reads the files
and interpolates as ``docker compose`` would in this shell), as a command line too, and standard input for
``-f -`` (parsed here: the agent gives a line that reads standard input back).
"""

from __future__ import annotations

import os
import sys

from netcore.errors import INTERRUPTED, NetcoreError, os_error_text
from netcore.system.privileges import missing_capabilities

DEBUG_ENV = "NETCORE_DEBUG"  # "1": an unexpected error shows its traceback
DEFAULT_STATE_DIR = "/var/lib/netcore"
RUN_FAILED = 125  # Docker's exit status for the runtime's own failure in `run -- CMD`
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a program killed by writing to a closed pipe exits with
USAGE_STATUS = 2  # a usage error's, and netcored's for a request it does not take (netcore.agent.protocol.USAGE)
# the Compose commands, by first word: their request carries the client's working directory and environment
CONTEXT_COMMANDS = frozenset({"compose", "up", "down"})
# the commands the agent may parse (their command line is the request), by first word: not those the client
# completes itself (a prune's question, its own version, completion, the stop of an agent of an older release)
LINE_COMMANDS = frozenset({"network", "run", "exec", "rm", "ps", "inspect", "port", "logs", "start", "stop",
                           "restart", "purge", "firewall-reload", "dns-options", "host-dns", "agent", "compose", "up",
                           "down"})
NOT_AS_LINE = frozenset({"network prune", "agent stop"})
# those of them the native launcher sends itself (netcore/cli/launcher.c, built by setup.py): a reply it only
# prints; not exec (run here, in the container's namespace) nor agent (its reply printed as a status)
LAUNCHER_COMMANDS = LINE_COMMANDS - {"exec", "agent"}
GLOBAL_OPTIONS = {"--netns": "netns", "--state-dir": "state_dir"}  # the parser's, before the command


def _runs_command(argv: list[str]) -> bool:
    """Whether the command line is ``run ... -- CMD``."""
    words = [w for w in argv if not w.startswith("-")]
    return bool(words) and words[0] == "run" and "--" in argv


def main(argv: list[str] | None = None) -> int:
    """The ``netcore`` command: 0 on success; errors are one line on stderr and a non-zero exit."""
    argv = sys.argv[1:] if argv is None else argv
    debug = os.environ.get(DEBUG_ENV) == "1"
    line = command_line(argv)
    if line is not None:
        state_dir, namespace, verb = line
        code = _guarded(verb, _runs_command(argv), debug,
                        lambda: _request_line(argv, state_dir, namespace, verb, debug))
        if code is not None:
            return code
    from netcore.cli.parser import build_parser, command_name, command_word

    try:
        args = build_parser(command_word(argv)).parse_args(argv)
    except SystemExit as exited:
        if exited.code == 2 and _runs_command(argv):
            raise SystemExit(RUN_FAILED) from None
        raise
    verb = command_name(args)
    command = verb == "run" and bool(getattr(args, "cmd", None))
    return _guarded(verb, command, debug, lambda: _parsed(args, verb, debug))


def command_line(argv: list[str]) -> tuple[str, str | None, str] | None:
    """Where a command line goes when the agent may parse it (``LINE_COMMANDS``): (state dir, gateway
    namespace, the command as its first words name it), the global options read as the parser reads them.
    None when the client parses it first: another command, help asked for, or anything the parser might read
    otherwise than this (an unknown option, a value that starts with ``-``)."""
    found = {"netns": os.environ.get("NETCORE_NETNS") or None,
             "state_dir": os.environ.get("NETCORE_STATE_DIR") or DEFAULT_STATE_DIR}
    at = 0
    while at < len(argv) and argv[at].startswith("--"):
        option, sep, value = argv[at].partition("=")
        if option not in GLOBAL_OPTIONS:
            return None
        if not sep:
            at += 1
            if at == len(argv) or argv[at].startswith("-"):
                return None
            value = argv[at]
        found[GLOBAL_OPTIONS[option]] = value
        at += 1
    words = argv[at:at + 2]
    if not words or words[0] not in LINE_COMMANDS or "-h" in argv or "--help" in argv:
        return None
    verb = words[0]
    if verb in ("network", "agent"):  # commands of two words, the second right after the first
        if len(words) < 2 or words[1].startswith("-"):
            return None
        verb = " ".join(words)
    if verb in NOT_AS_LINE:
        return None
    return found["state_dir"], found["netns"], verb


def _request_line(argv: list[str], state_dir: str, namespace: str | None, verb: str, debug: bool) -> int | None:
    """Send the command line (of ``verb``: a Compose command's with this directory and environment) to the
    agent; its exit status, or None for the usual way (parsed here): no
    privilege (said once the usage is checked), no agent running (a usage error must not start one), the
    agent gave the line back (``"parse"``: a usage error, said here in the parser's words), or an agent of an
    older protocol refused it (the usual way says a usage error, or sends the command, which it refuses in its
    own words)."""
    if missing_capabilities():
        return None
    from netcore.agent.client import AgentClient, AgentUnavailable

    held: list[str] = []  # a refusal of the protocol: the reply's first line, held back
    told: list[bool] = []

    def out(text: str) -> None:
        told.append(True)
        _print_out(text)

    def err(line: str) -> None:
        if not told and line.startswith("this netcore speaks protocol"):
            held.append(line)
        else:
            _print_err(line)
        told.append(True)

    context = _context(verb)
    try:
        reply = AgentClient(state_dir, namespace).call("", {}, out, err, start=False, debug=debug, argv=argv,
                                                       graceful=_print_graceful, **context)
    except AgentUnavailable:
        return None
    if "parse" in reply or (held and reply["exit"] == USAGE_STATUS):
        return None
    for line in held:
        _print_err(line)
    if "agent" in reply:
        _print_agent(reply["agent"])
    return _finish(reply, reply.get("command", False))


def _guarded(verb: str, command: bool, debug: bool, step) -> int | None:
    """``step()``, its errors one line each (``command``: ``run ... -- CMD``, whose own failure is 125)."""
    try:
        return step()
    except (BrokenPipeError, _ReaderGone):
        return _quiet_pipe()
    except NetcoreError as err:
        print(f"netcore: {err}", file=sys.stderr)
        return RUN_FAILED if command and err.exit_code not in (126, 127) else err.exit_code
    except OSError as err:
        if debug:
            raise
        print(f"netcore: {verb}: {os_error_text(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("netcore: interrupted", file=sys.stderr)
        return INTERRUPTED


def _parsed(args, verb: str, debug: bool) -> int:
    """The command ``args``, parsed here: answered by the client (completion) or sent to the agent."""
    from netcore.cli.parser import LOCAL_VERBS

    if verb in LOCAL_VERBS:
        return _completion(args)
    missing = missing_capabilities()
    if missing:
        raise NetcoreError(f"netcore must run as root with {' and '.join(missing)}: "
                           "it creates namespaces and links (permission denied)")
    return _request(args, verb, debug)


def _request(args, verb: str, debug: bool) -> int:
    from netcore.agent.client import AgentClient
    from netcore.cli.parser import request_params

    client = AgentClient(args.state_dir, args.netns)
    if verb.startswith("agent "):
        return _agent(client, verb)
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)  # an unusable state dir: one line naming it
    params = {**request_params(args), **_context(verb)}
    if "cwd" in params and "-" in (params.get("files") or ()):  # Compose's -f -
        params["stdin"] = sys.stdin.read()
    if verb == "network prune" and not args.force and not _confirm(
            "WARNING! This will remove all custom networks not used by at least one container."):
        raise NetcoreError("network prune cancelled: nothing was removed")
    if verb == "version":
        _print_out(f"Client:\n Version:      {_version()}\n Protocol:     {_protocol()}\n")
    reply = client.call(verb, params, _print_out, _print_err, debug=debug, graceful=_print_graceful)
    return _finish(reply, verb == "run" and bool(args.cmd))


def _context(verb: str) -> dict:
    """What a request of ``verb`` carries of this process beside its arguments: for a Compose command
    (``CONTEXT_COMMANDS``) its working directory and environment, which Compose reads its files from and
    interpolates with; nothing for any other."""
    return {"cwd": os.getcwd(), "environ": dict(os.environ)} if verb.split()[0] in CONTEXT_COMMANDS else {}


def _finish(reply: dict, command: bool) -> int:
    """The exit status of a reply: ``exec``'s command run here, in the container's namespace; a failure of
    ``run ... -- CMD`` (``command``) is 125."""
    target = reply.get("exec")
    if target:
        from netcore.kernel.sandbox import run_in

        sys.stdout.flush()
        return run_in(target["netns"], target["argv"])
    if command and reply["exit"] not in (0, 126, 127):
        return RUN_FAILED
    return reply["exit"]


def _confirm(warning: str) -> bool:
    """Docker's question before a prune: True only for an answer of y or yes (no terminal: no)."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stdout.write("\n")
    return answer.strip().lower() in ("y", "yes")


def _version() -> str:
    """This checkout's release (the installed distribution's, or the source tree's pyproject.toml)."""
    from importlib import metadata

    try:
        return metadata.version("netcore-dnsd")
    except metadata.PackageNotFoundError:
        return "unknown"


def _protocol() -> int:
    from netcore.agent.protocol import PROTOCOL

    return PROTOCOL


def _completion(args) -> int:
    """``netcore completion bash``: the completion script, generated from this parser by shtab."""
    from netcore.cli.parser import build_parser

    try:
        import shtab
    except ImportError:
        raise NetcoreError("netcore completion needs the shtab package: python3 -m pip install shtab") from None
    parser = build_parser()
    print(shtab.complete(parser, shell=args.shell))
    return 0


def _quiet_pipe() -> int:
    """The reader of our output went away: no message, and no second error when Python flushes at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return BROKEN_PIPE


def _agent(client, verb: str) -> int:
    """``agent status`` and ``agent stop``: they never start an agent."""
    from netcore.agent.client import AgentUnavailable

    refused: list[str] = []
    try:
        reply = client.call(verb, {}, _print_out, refused.append, start=False)
    except AgentUnavailable as err:
        if verb == "agent stop":
            return 0  # none runs: stopped already
        print(f"netcore: {err}", file=sys.stderr)
        return 1
    older = refused and refused[0].startswith("this netcore speaks protocol")  # an agent of an older release
    if verb == "agent stop" and older and client.terminate():
        return 0  # stopped by its pid, as systemd stops it (an agent of this release or later takes the request)
    for line in refused:
        _print_err(line)
    agent = reply.get("agent")
    if agent:
        _print_agent(agent)
    return reply["exit"]


def _print_agent(agent: dict) -> None:
    """What ``agent status`` prints of the agent's reply."""
    _print_out(f"pid {agent['pid']}\nprotocol {agent['protocol']}\nuptime {agent['uptime']:.0f} s\n"
               f"state dir {agent['state_dir']}\nnamespace {agent['netns'] or '(host)'}\n")


class _ReaderGone(Exception):
    """Standard output's reader went away (``netcore ps | head``): the command ends quietly."""


def _print_out(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()  # a streamed reply (logs -f, compose's progress) shows as it comes
    except BrokenPipeError:
        raise _ReaderGone() from None


def _print_err(line: str) -> None:
    sys.stdout.flush()
    print(f"netcore: {line}", file=sys.stderr)


def _print_graceful() -> None:
    """What Ctrl-C during an interruptible reply says (an attached ``compose up``), as Docker Compose says it."""
    from netcore.agent.protocol import GRACEFUL

    sys.stdout.flush()
    print(GRACEFUL, file=sys.stderr, flush=True)
