"""The attacker's side of the issue 24 tests, run inside a test's own namespaces (never the host's).

    forge LOG NAME UPSTREAM TARGET a forger next to the upstream: waits until fake_upstream.py's query log
                                   (LOG) shows the query for NAME (its source port and ID: a forger who
                                   guessed them), then sends --wrong replies with wrong IDs and one with the
                                   right ID, each with A 6.6.6.6, from UPSTREAM port 53 to TARGET (dnsd's side
                                   of the link) at that port, through a raw socket bound to UPSTREAM (the
                                   kernel writes the IP header); prints "sent N"
    burst SERVER NAME COUNT        COUNT identical queries for NAME at SERVER port 53, each from a socket and ID
                                   of its own, sent back to back; prints one line per reply: "ID ADDRESSES"
    relay LISTEN SERVER            a resolver on LISTEN port 53 that forwards every query to SERVER port 53 and
                                   relays the reply (a Pi-hole in front of dnsd); prints "ready PID", then one
                                   "asked NAME" line per query it gets (PID: its own, for the test to stop it
                                   by: `netcore exec` runs it as a child of its own)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import sys
import threading
import time

from dnslib import QTYPE, RR, A, DNSRecord


def forge(log: str, name: str, upstream: str, target: str, wrong: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(log) as file:
            seen = [line.split() for line in file if line.split()[:2] == ["udp", name.lower().rstrip(".") + "."]]
            if seen:
                break
        time.sleep(0.002)
    else:
        sys.exit(f"no query for {name} in {log}")
    _, _, port, query_id = seen[0]
    port, query_id = int(port), int(query_id, 16)
    query = DNSRecord.question(name)
    forged = query.reply()
    forged.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("6.6.6.6"), ttl=3600))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.bind((upstream, 0))  # the kernel writes the IP header, the upstream's address as its source
    sent = 0
    for guess in [(query_id + 1 + i) % 65536 for i in range(wrong)] + [query_id]:
        forged.header.id = guess
        payload = forged.pack()
        header = (53).to_bytes(2, "big") + port.to_bytes(2, "big") + (8 + len(payload)).to_bytes(2, "big") + b"\0\0"
        raw.sendto(header + payload, (target, port))
        sent += 1
    print(f"sent {sent}", flush=True)


def burst(server: str, name: str, count: int) -> None:
    sockets = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        query = DNSRecord.question(name)
        query.header.id = 1000 + i
        sock.sendto(query.pack(), (server, 53))
        sockets.append(sock)
    deadline = time.monotonic() + 10
    pending = set(sockets)
    while pending and time.monotonic() < deadline:
        ready, _, _ = select.select(list(pending), [], [], 0.5)
        for sock in ready:
            reply = DNSRecord.parse(sock.recv(4096))
            print(reply.header.id, ",".join(str(record.rdata) for record in reply.rr) or "-", flush=True)
            pending.discard(sock)
            sock.close()


def relay(listen: str, server: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, 53))
    print(f"ready {os.getpid()}", flush=True)

    def forward(data: bytes, client: tuple) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(5)
            upstream.sendto(data, (server, 53))
            with contextlib.suppress(TimeoutError):
                sock.sendto(upstream.recv(65535), client)

    while True:
        data, client = sock.recvfrom(65535)
        with contextlib.suppress(Exception):
            print("asked", DNSRecord.parse(data).q.qname, flush=True)
        threading.Thread(target=forward, args=(data, client), daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    forging = commands.add_parser("forge")
    forging.add_argument("log")
    forging.add_argument("name")
    forging.add_argument("upstream")
    forging.add_argument("target")
    forging.add_argument("--wrong", type=int, default=3000)
    bursting = commands.add_parser("burst")
    bursting.add_argument("server")
    bursting.add_argument("name")
    bursting.add_argument("count", type=int)
    relaying = commands.add_parser("relay")
    relaying.add_argument("listen")
    relaying.add_argument("server")
    args = parser.parse_args()
    if args.command == "forge":
        forge(args.log, args.name, args.upstream, args.target, args.wrong)
    elif args.command == "burst":
        burst(args.server, args.name, args.count)
    else:
        relay(args.listen, args.server)


if __name__ == "__main__":
    main()
