"""CHECK's question to dnsd: one query on the gateway, the addresses that come back (``netcore-dns`` CHECK).

Kept out of ``dnsd.cni.plugin`` so ADD and DEL never load it. The wire form is
dnsd's own (``dnsd.core.wire``); the query goes to port 53 of the gateway address,
from the namespace the runtime runs the plugin in (the gateway's).
"""

from __future__ import annotations

import os
import socket

from dnsd.core.wire import A_IN, AAAA_IN, HEADER_SIZE, RR_FIXED, encode_name, record_spans, skip_name
from netcore.model import DNS_PORT

ATTEMPTS = 3
TIMEOUT = 1.0  # seconds per attempt; CHECK may come right after ADD, which has already waited for dnsd


def query(name: str, qtype: str, query_id: int) -> bytes:
    """A recursion-desired query for ``name`` (A or AAAA); ValueError if the name cannot be encoded."""
    wire = encode_name(name)
    if wire is None:
        raise ValueError(f"{name!r} is no DNS name")
    header = query_id.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00"
    return header + wire + (A_IN if qtype == "A" else AAAA_IN)


def addresses_in(reply: bytes, qtype: str, query_id: int) -> list[str] | None:
    """The addresses of the answer records of ``qtype`` in a reply to ``query_id``; None if it is no such reply."""
    if len(reply) < HEADER_SIZE or reply[:2] != query_id.to_bytes(2, "big") or not reply[2] & 0x80:
        return None
    layout = record_spans(reply)
    if layout is None:
        return None
    _, answers, spans = layout
    wanted = A_IN if qtype == "A" else AAAA_IN
    family = socket.AF_INET if qtype == "A" else socket.AF_INET6
    found = []
    for start, end, _, _ in spans[:answers]:
        fixed = skip_name(reply, start)
        if reply[fixed:fixed + 4] == wanted:
            length = RR_FIXED.unpack_from(reply, fixed)[3]
            found.append(socket.inet_ntop(family, reply[end - length:end]))
    return found


def answered_addresses(server: str, name: str, qtype: str = "A") -> list[str]:
    """Ask ``server`` (port 53) for ``name``; the addresses answered. OSError (TimeoutError) if it never answers."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT)
        for _ in range(ATTEMPTS):
            query_id = int.from_bytes(os.urandom(2), "big")
            sock.sendto(query(name, qtype, query_id), (server, DNS_PORT))
            try:
                while True:
                    found = addresses_in(sock.recv(4096), qtype, query_id)
                    if found is not None:
                        return found
            except TimeoutError:
                continue
    raise TimeoutError(f"no answer from {server} in {ATTEMPTS} attempts")
