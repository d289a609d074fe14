"""A DNS client for tests that need many queries: runs inside a container via `netcore exec`.

    dns_probe.py first SERVER NAME COUNT   -> JSON {address: times it came first}
    dns_probe.py garbage SERVER COUNT      -> sends COUNT malformed datagrams, prints how many got a reply
    dns_probe.py churn SERVER STOPFILE NAME...  -> queries the names in turn until STOPFILE exists;
                                                  JSON lines [name, sent, received, rcode, [addresses]]
                                                  with CLOCK_MONOTONIC times (shared by all processes)
    dns_probe.py tcp-abuse SERVER COUNT    -> opens COUNT idle connections, COUNT/4 that send half a
                                              length prefix and COUNT/4 that send queries but never
                                              read; prints "ready", holds them until stdin closes,
                                              then waits (at most 15 s) for the server to close
                                              them and prints how many it closed
"""

import json
import os
import random
import select
import socket
import sys
import time

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
        except TimeoutError:
            pass
    return replies


def churn(server: str, stopfile: str, names: list[str]) -> None:
    out = sys.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.connect((server, 53))
        i = 0
        while not os.path.exists(stopfile):
            name = names[i % len(names)]
            i += 1
            query = DNSRecord.question(name, "A")
            sent = time.monotonic()
            sock.send(query.pack())
            try:
                while True:
                    reply = DNSRecord.parse(sock.recv(4096))
                    if reply.header.id == query.header.id:
                        break
                received = time.monotonic()
                addresses = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
                out.write(json.dumps([name, sent, received, reply.header.rcode, addresses]) + "\n")
            except (TimeoutError, ConnectionRefusedError):  # refused: no server on the port (dnsd killed)
                out.write(json.dumps([name, sent, None, None, []]) + "\n")
    out.flush()


def check_churn(answers: list, visible: dict) -> tuple[list, list, int]:
    """Judge churn answers against when each name held each address.

    ``answers``: [name, sent, received, rcode, addresses] lines from `churn`.
    ``visible``: name -> [[address, appearing, appeared, disappearing, disappeared], ...]
    (CLOCK_MONOTONIC times around the commands that made the name appear and disappear).
    Returns (wrong answers, names missing while they surely existed, queries never answered).
    """
    wrong, missing, unanswered = [], [], 0
    for name, sent, received, rcode, addresses in answers:
        if received is None:
            unanswered += 1
            continue
        for address in addresses:  # valid if the name held this address at some moment of the query
            if not any(ip == address and appearing <= received and disappeared >= sent
                       for ip, appearing, _, _, disappeared in visible[name]):
                wrong.append((name, address, sent, received))
        if not addresses and any(appeared <= sent and received <= disappearing
                                 for _, _, appeared, disappearing, _ in visible[name]):
            missing.append((name, sent, rcode))
    return wrong, missing, unanswered


def tcp_abuse(server: str, count: int) -> None:
    query = DNSRecord.question("web", "A").pack()
    held = []
    for i in range(count):
        sock = socket.create_connection((server, 53), timeout=5)
        if i % 4 == 1:
            sock.send(b"\x00")  # half a length prefix, then silence
        elif i % 4 == 2:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            try:  # pipeline queries and never read the answers
                for _ in range(200):  # ~9 KB of answers: more than the 4 KiB it lets in
                    sock.send(len(query).to_bytes(2, "big") + query)
            except BlockingIOError:
                pass
        held.append(sock)
    print("ready", flush=True)
    sys.stdin.read()
    open_socks = dict(enumerate(held))
    deadline = time.monotonic() + 15  # the server's idle timeout, with room for a busy machine
    while open_socks and time.monotonic() < deadline:
        for i, sock in list(open_socks.items()):
            if _closed_by_peer(sock):
                del open_socks[i]
        time.sleep(0.1)
    print(len(held) - len(open_socks), flush=True)
    kinds = ["idle", "half prefix", "never reads", "idle"]
    print("still open:", sorted(kinds[i % 4] for i in open_socks), file=sys.stderr)


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server has closed (FIN or RST) this connection; unread data is drained on the way."""
    sock.setblocking(False)
    try:
        while select.select([sock], [], [], 0)[0]:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    return False

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "first":
        print(json.dumps(first_answers(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
    elif mode == "garbage":
        print(garbage(sys.argv[2], int(sys.argv[3])))
    elif mode == "churn":
        churn(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif mode == "tcp-abuse":
        tcp_abuse(sys.argv[2], int(sys.argv[3]))
