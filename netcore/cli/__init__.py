"""The `netcore` command: a thin client of netcored, the state dir's agent (netcore.agent).

It parses the command line (netcore.cli.parser), sends the command as one request to the agent (starting
one when none answers), prints what comes back, and exits with the command's status. What must happen in
the user's own terminal it does itself: ``exec`` and ``run -- CMD`` run the command inside the container's
namespace (netcore.sandbox.run_in). It imports nothing heavy: no pyroute2, no store, no engine.

Errors are one line on stderr and a non-zero exit: 2 for a usage error, the error's own code otherwise;
``NETCORE_DEBUG=1`` shows an unexpected error's traceback instead.
"""

from __future__ import annotations

import os
import sys

from netcore.cli.parser import build_parser, command_name, request_params
from netcore.errors import NetcoreError, os_error_text
from netcore.system.privileges import missing_capabilities

DEBUG_ENV = "NETCORE_DEBUG"  # "1": an unexpected error shows its traceback


def main(argv: list[str] | None = None) -> int:
    """The ``netcore`` command: 0 on success; errors are one line on stderr and a non-zero exit."""
    args = build_parser().parse_args(argv)
    verb = command_name(args)
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        missing = missing_capabilities()
        if missing:
            raise NetcoreError(f"netcore must run as root with {' and '.join(missing)}: "
                               "it creates namespaces and links (permission denied)")
        return _request(args, verb, debug)
    except NetcoreError as err:
        print(f"netcore: {err}", file=sys.stderr)
        return err.exit_code
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
    reply = client.call(verb, request_params(args), _print_out, _print_err, debug=debug)
    target = reply.get("exec")
    if target:
        from netcore.kernel.sandbox import run_in

        sys.stdout.flush()
        return run_in(target["netns"], target["argv"])
    return reply["exit"]


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


def _print_out(text: str) -> None:
    sys.stdout.write(text)


def _print_err(line: str) -> None:
    sys.stdout.flush()
    print(f"netcore: {line}", file=sys.stderr)
