"""dnsd: the embedded DNS server of netcore's user-defined bridge networks.

``snapshot`` holds ready-made answers, which ``builder`` makes from the
store's records and patches when a few containers change; ``answer`` is the
sans-IO core that turns a query into a reply, ``forward`` asks upstream
servers, and ``server`` is the asyncio shell that owns the sockets.
"""
