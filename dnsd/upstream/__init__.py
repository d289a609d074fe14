"""The upstream path: what dnsd does with a name it does not hold. ``forward`` asks upstream servers (the
``Resolver`` protocol and its ``Forwarder``), ``cache`` keeps their replies and wraps a resolver, as CoreDNS's
cache plugin wraps the next one."""
