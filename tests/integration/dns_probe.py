"""A DNS client for tests that need many queries: runs inside a container via `netcore exec`.

    dns_probe.py first SERVER NAME COUNT   -> JSON {address: times it came first}
    dns_probe.py garbage SERVER COUNT      -> sends COUNT malformed datagrams, prints how many got a reply
"""

import json
import random
import socket
import sys

from dnslib import QTYPE, DNSRecord


def first_answers(server: str, name: str, count: int) -> dict:
    tally: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect((server, 53))
        for _ in range(count):
            query = DNSRecord.question(name, "A")
            sock.send(query.pack())
            reply = DNSRecord.parse(sock.recv(4096))
            assert reply.header.id == query.header.id
            first = next(str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A)
            tally[first] = tally.get(first, 0) + 1
    return tally


def garbage(server: str, count: int) -> int:
    rng = random.Random(7)
    valid = DNSRecord.question("web", "A").pack()
    shapes = [
        lambda: b"",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))),  # shorter than a header
        lambda: bytes(rng.randrange(256) for _ in range(rng.randrange(12, 600))),  # random
        lambda: valid[:12] + b"\xc0\x0c" + valid[-4:],  # compression pointer loop in the question
        lambda: valid[:12] + b"\x40" + b"a" * 64 + b"\x00" + valid[-4:],  # label over 63 bytes
        lambda: valid[:2] + b"\x81\x80" + valid[4:],  # a response, not a query
        lambda: valid[:4] + b"\x00\x05" + valid[6:],  # qdcount lies
        lambda: valid[:2] + b"\x28\x00" + valid[4:],  # opcode UPDATE
    ]
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(shapes[i % len(shapes)](), (server, 53))
        sock.settimeout(0.5)
        try:
            while True:
                sock.recv(4096)
                replies += 1
        except socket.timeout:
            pass
    return replies


if __name__ == "__main__":
    if sys.argv[1] == "first":
        print(json.dumps(first_answers(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    else:
        print(garbage(sys.argv[2], int(sys.argv[3])))
