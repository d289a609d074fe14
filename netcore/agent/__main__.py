"""``python -m netcore.agent --state-dir DIR [--netns NAME]``: run netcored in the foreground.

The CLI starts it this way, detached, when no agent answers; a systemd unit runs it the same way
(contrib/systemd/netcored.service, ``Type=notify``). Errors are one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from netcore.cli.parser import DEFAULT_STATE_DIR
from netcore.errors import NetcoreError
from netcore.system.arguments import OneLineParser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """netcored's command line; a usage error is one line and exit 2 (netcore.system.arguments)."""
    parser = OneLineParser(prog="netcored", description="netcore's per-host agent.")
    parser.add_argument("--state-dir", default=os.environ.get("NETCORE_STATE_DIR") or DEFAULT_STATE_DIR)
    parser.add_argument("--netns", default=os.environ.get("NETCORE_NETNS") or None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s netcored[%(process)d] %(levelname)s %(message)s")
    from netcore.agent.server import Agent  # the engine's imports: after the usage is checked

    agent = Agent(args.state_dir, args.netns)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop())  # the command under way finishes first
    try:
        return agent.run()
    except (NetcoreError, OSError) as err:
        print(f"netcored: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
