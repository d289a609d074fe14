"""netcore's engine: one call per user action, split by job.

``frame`` (the action frame and the verbs: ``Engine``), ``planning`` (requests to rows: names, IPAM,
ports), ``build`` (kernel work, ``build``/``teardown``), ``follow`` (dnsd, the firewall and the held ports
after an action), ``recovery`` (reconciliation, purge), ``lock`` (the state dir's lock), ``context`` (what
they all work on). Only the agent (netcore.agent) and tests drive it.
"""

from netcore.engine.frame import Engine

__all__ = ["Engine"]
