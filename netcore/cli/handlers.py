"""Every command's handler, by the command as users type it: netcore.cli.commands' and the Compose commands'
(netcore.cli.compose). netcored (netcore.agent.server) runs them."""

from __future__ import annotations

from netcore.cli import commands, compose

HANDLERS = {**commands.HANDLERS, **compose.HANDLERS}
READ_ONLY = commands.READ_ONLY | compose.READ_ONLY  # commands that change nothing: they re-assert the firewall
