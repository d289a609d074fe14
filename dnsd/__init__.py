"""dnsd: the embedded DNS server of netcore's user-defined bridge networks.

``snapshot`` holds ready-made answers, which ``builder`` makes from the
store's records and patches when a few containers change; ``answer`` is the
sans-IO core that turns a query into a reply, with ``wire`` the DNS numbers and
name encoding they share. ``server`` is the asyncio shell that wires the rest:
``listeners`` (a ``udp`` thread and a ``tcp`` server per gateway address),
``reload``, the ``control`` socket, a ``forward.Resolver`` for names not held
(the ``Forwarder``, built by ``__main__``), and ``stats``, the counters they
all share. ``config`` holds dnsd's settings and their defaults. ``aardvark``
runs the same server as Podman's aardvark-dns, over the records
``aardvark_config`` reads from netavark's config directory, answering by
aardvark-dns's rules where they differ from Docker's (``dialect``); ``dnsd --cni``
over what the ``netcore-dns`` CNI plugin registered (``cni_plugin``, ``cni_store``,
``cni_records``, ``cni_service``; installed by ``cni_install``).
"""
