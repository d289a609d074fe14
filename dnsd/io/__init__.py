"""dnsd's sockets: the listeners on every gateway address (``listeners``), each a UDP socket with a thread of
its own (``udp``, and its compiled quiet loop ``_replay``, dnsd/io/_replay.c) and a TCP server (``tcp``); and
the addresses of the namespace dnsd serves from (``local_addresses``). They hand every message to the
answering core and decide nothing about names."""
