"""Networks across hosts (issue 27): the cluster's state in etcd, and what each host derives from it.

- ``keys``: the key layout under ``/netcore/v1/`` and the value encoding (pure).
- ``store``: the ``ClusterStore`` protocol, ``EtcdStore`` (aetcd, failover, timeouts), ``LeaseKeeper``
  (a host's lease and keepalive) and ``PrefixFollower`` (watch with resume and re-list on compaction).
- ``fake_store``: ``FakeClusterStore``, in memory, for unit tests.
- ``allocate``: cluster-wide allocation of names, VXLAN IDs, subnets and addresses by transactions.
- ``view``: the in-memory mirror the watch feeds, and its change feed (pure).
- ``dataplane``: the FDB/neighbour diff for a VXLAN device (pure); ``dataplane_netlink`` applies it.

Nothing here is imported by a host that never joined a cluster (aetcd is imported by ``EtcdStore`` only).
"""
