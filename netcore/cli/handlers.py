"""Every command's handler, by the command as users type it: netcore.cli.commands', the Compose commands'
(netcore.cli.compose) and the cluster's (netcore.cli.cluster). netcored (netcore.agent.server) runs them."""

from __future__ import annotations

from netcore.cli import cluster, commands, compose

HANDLERS = {**commands.HANDLERS, **compose.HANDLERS, **cluster.HANDLERS}
# commands that change nothing: they re-assert the firewall
READ_ONLY = commands.READ_ONLY | compose.READ_ONLY | cluster.READ_ONLY
