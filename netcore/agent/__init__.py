"""netcored, the per-host agent every netcore command goes through (issue 26): ``protocol`` (pure, the wire
format), ``client`` (light: what the CLI uses to reach or start it), ``server`` (the agent itself)."""
