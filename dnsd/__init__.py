"""dnsd: the embedded DNS server of netcore's user-defined bridge networks.

``snapshot`` turns the store's records into ready-made answers, ``answer`` is
the sans-IO core that turns a query into a reply, ``forward`` asks upstream
servers, and ``server`` is the asyncio shell that owns the sockets.
"""
