"""dnsd: the embedded DNS server of netcore's user-defined networks, of Podman's (as aardvark-dns) and of CNI
runtimes' (as the ``netcore-dns`` plugin).

By layer, each importing only those below it (docs/ARCHITECTURE.md; tests/unit/test_architecture.py):

* ``core``: the answering core, pure and sans-IO. ``records`` names what a record source gives;
  ``builder`` turns records into an immutable ``snapshot`` of ready-made answers and patches it;
  ``answer`` turns a query into a reply or a decision to forward; ``wire`` is the DNS numbers and
  names; ``dialect`` Docker's and aardvark-dns's rules; ``stats`` the shared counters; ``config``
  the settings and every default.
* ``sources``: record sources besides netcore's store (which is one as it is): Podman's config
  directory (``aardvark``, parsed by ``aardvark_config``), the CNI plugin's registrations (``cni``,
  stored by ``cni_store``).
* ``upstream``: names not held: ``forward`` (the ``Resolver`` protocol, the ``Forwarder``) and the
  ``cache`` that wraps it.
* ``io``: the ``listeners`` per gateway address, each a ``udp`` thread (``_replay``, C) and a ``tcp``
  server; ``local_addresses`` of the namespace served from.
* ``ops``: ``metrics``, the ``querylog``, the ``control`` socket.
* ``server`` (the asyncio shell wiring the layers) and ``reload`` (the next snapshot, in a thread).
* ``app``: the one assembly, a server of a config and a record source.
* The commands: ``python -m dnsd`` (``__main__``: netcore's store, or ``--cni`` the plugin's
  registrations), the aardvark-dns drop-in (``aardvark``), ``python -m dnsd.supervise``, and the CNI
  plugin (``cni``: ``plugin``, ``service``, ``check``, ``install``, ``shim.c``).

Imports nothing: the CNI plugin passes through on every call.
"""
