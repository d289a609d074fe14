"""Services beside the networks: the host's resolver pointed at dnsd (``host_resolver``), and Docker's rule
for the name servers a container without embedded DNS gets (``resolvconf``, pure)."""
