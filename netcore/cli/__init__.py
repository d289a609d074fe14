"""The `netcore` command: a thin client of netcored, the state dir's agent (netcore.agent).

It parses the command line (netcore.cli.parser), sends the command as one request to the agent (starting
one when none answers), prints what comes back, and exits with the command's status. What must happen in
the user's own terminal it does itself: ``exec`` and ``run -- CMD`` run the command inside the container's
namespace (netcore.sandbox.run_in). It imports nothing heavy: no pyroute2, no store, no engine.

Errors are one line on stderr and a non-zero exit: 2 for a usage error, the error's own code otherwise;
``run ... -- CMD`` exits 125 for netcore's own failure and with the command's status otherwise (Docker's
convention). ``NETCORE_DEBUG=1`` shows an unexpected error's traceback instead. A reader that goes away
(``netcore ps | head``) ends the command quietly, with 141 (128 + SIGPIPE) as a program killed by it.

A Compose command sends the client's working directory and environment along (the agent reads the files
and interpolates as ``docker compose`` would in this shell), and standard input for ``-f -``.
"""

from __future__ import annotations

import os
import sys

from netcore.cli.parser import LOCAL_VERBS, build_parser, command_name, command_word, request_params
from netcore.errors import NetcoreError, os_error_text
from netcore.system.privileges import missing_capabilities

DEBUG_ENV = "NETCORE_DEBUG"  # "1": an unexpected error shows its traceback
RUN_FAILED = 125  # Docker's exit status for the runtime's own failure in `run -- CMD`
BROKEN_PIPE = 141  # 128 + SIGPIPE: what a program killed by writing to a closed pipe exits with
COMPOSE_VERBS = ("compose ", "up", "down")


def _runs_command(argv: list[str]) -> bool:
    """Whether the command line is ``run ... -- CMD``."""
    words = [w for w in argv if not w.startswith("-")]
    return bool(words) and words[0] == "run" and "--" in argv


def main(argv: list[str] | None = None) -> int:
    """The ``netcore`` command: 0 on success; errors are one line on stderr and a non-zero exit."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(command_word(argv)).parse_args(argv)
    except SystemExit as exited:
        if exited.code == 2 and _runs_command(argv):
            raise SystemExit(RUN_FAILED) from None
        raise
    verb = command_name(args)
    debug = os.environ.get(DEBUG_ENV) == "1"
    command = verb == "run" and bool(getattr(args, "cmd", None))
    try:
        if verb in LOCAL_VERBS:
            return _completion(args)
        missing = missing_capabilities()
        if missing:
            raise NetcoreError(f"netcore must run as root with {' and '.join(missing)}: "
                               "it creates namespaces and links (permission denied)")
        return _request(args, verb, debug)
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
        return 130


def _request(args, verb: str, debug: bool) -> int:
    from netcore.agent.client import AgentClient

    client = AgentClient(args.state_dir, args.netns)
    if verb.startswith("agent "):
        return _agent(client, verb)
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)  # an unusable state dir: one line naming it
    params = request_params(args)
    if verb.startswith(COMPOSE_VERBS):
        params.update(cwd=os.getcwd(), environ=dict(os.environ))
        if "-" in (params.get("files") or ()):
            params["stdin"] = sys.stdin.read()
    if verb == "network prune" and not args.force and not _confirm(
            "WARNING! This will remove all custom networks not used by at least one container."):
        raise NetcoreError("network prune cancelled: nothing was removed")
    if verb == "version":
        _print_out(f"Client:\n Version:      {_version()}\n Protocol:     {_protocol()}\n")
    reply = client.call(verb, params, _print_out, _print_err, debug=debug)
    target = reply.get("exec")
    if target:
        from netcore.kernel.sandbox import run_in

        sys.stdout.flush()
        return run_in(target["netns"], target["argv"])
    if verb == "run" and args.cmd and reply["exit"] not in (0, 126, 127):
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

    try:
        reply = client.call(verb, {}, _print_out, _print_err, start=False)
    except AgentUnavailable as err:
        if verb == "agent stop":
            return 0  # none runs: stopped already
        print(f"netcore: {err}", file=sys.stderr)
        return 1
    agent = reply.get("agent")
    if agent:
        print(f"pid {agent['pid']}\nprotocol {agent['protocol']}\nuptime {agent['uptime']:.0f} s\n"
              f"state dir {agent['state_dir']}\nnamespace {agent['netns'] or '(host)'}")
    return reply["exit"]


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
