"""A tiny upstream DNS server for forwarding tests, run inside a test's own namespace.

Answers NAME.upstream.test with A 192.0.2.1 (over UDP and TCP), nx.upstream.test
with NXDOMAIN and no SOA, nxsoa.upstream.test with NXDOMAIN and an SOA (TTL 300,
MINIMUM 30), big.upstream.test with 40 A records (truncated over UDP, TC set);
each --answer NAME=IP with A IP; any other name with NOERROR and no answer, or
with NXDOMAIN given --nxdomain-unknown (an upstream that does not know the name).
Every A record has TTL 60. --log FILE appends one line per query received
("udp NAME PORT ID": protocol, name, the asker's source port and the query's
ID in hex), so a test can count what reached the upstream (and an attacker
test can play a forger who guessed the port); --delay MS answers that much
later (a benchmark's distant upstream); --drop NAME never answers NAME (an
upstream that does not reply).
"""

import argparse
import socketserver
import threading
import time

from dnslib import QTYPE, RCODE, RR, SOA, A, DNSRecord

ANSWERS: dict[str, str] = {}  # --answer: lower-cased name with its trailing dot -> IPv4 address
NXDOMAIN_UNKNOWN = False
LOG = None  # --log: an open file, one line per query
LOG_LOCK = threading.Lock()
DELAY = 0.0  # --delay, in seconds
DROP: set[str] = set()  # --drop: lower-cased names with their trailing dot, never answered


def reply_for(data: bytes, udp: bool, port: int = 0) -> bytes | None:
    query = DNSRecord.parse(data)
    reply = query.reply()
    reply.header.ra = 1
    name = str(query.q.qname).lower()
    if LOG is not None:
        with LOG_LOCK:
            LOG.write(f"{'udp' if udp else 'tcp'} {name} {port} {query.header.id:04x}\n")
            LOG.flush()
    if name in DROP:
        return None
    if DELAY:
        time.sleep(DELAY)
    if name in ANSWERS:
        if query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(ANSWERS[name]), ttl=60))
    elif name == "nx.upstream.test.":
        reply.header.rcode = RCODE.NXDOMAIN
    elif name == "nxsoa.upstream.test.":
        reply.header.rcode = RCODE.NXDOMAIN
        reply.add_auth(RR("upstream.test.", QTYPE.SOA, ttl=300, rdata=SOA(
            "ns.upstream.test.", "admin.upstream.test.", (1, 3600, 600, 86400, 30))))
    elif name == "big.upstream.test.":
        for i in range(40):
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=60))
        if udp:
            packed = reply.pack()
            if len(packed) > 512:
                reply = query.reply()
                reply.header.tc = 1
    elif name.endswith(".upstream.test.") and query.q.qtype == QTYPE.A:
        reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A("192.0.2.1"), ttl=60))
    elif NXDOMAIN_UNKNOWN and not name.endswith(".upstream.test."):
        reply.header.rcode = RCODE.NXDOMAIN
    return reply.pack()


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = reply_for(data, udp=True, port=self.client_address[1])
        if out is not None:
            sock.sendto(out, self.client_address)


class TCPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            data = self.rfile.read(int.from_bytes(head, "big"))
            out = reply_for(data, udp=False, port=self.client_address[1])
            if out is not None:
                self.wfile.write(len(out).to_bytes(2, "big") + out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--answer", action="append", default=[], metavar="NAME=IP")
    parser.add_argument("--nxdomain-unknown", action="store_true")
    parser.add_argument("--log", metavar="FILE")
    parser.add_argument("--delay", type=float, default=0.0, metavar="MS")
    parser.add_argument("--drop", action="append", default=[], metavar="NAME")
    args = parser.parse_args()
    global NXDOMAIN_UNKNOWN, LOG, DELAY
    NXDOMAIN_UNKNOWN = args.nxdomain_unknown
    LOG = open(args.log, "a") if args.log else None  # noqa: SIM115 - open for the process's life
    DELAY = args.delay / 1000
    DROP.update(name.lower().rstrip(".") + "." for name in args.drop)
    for answer in args.answer:
        name, _, address = answer.partition("=")
        ANSWERS[name.lower().rstrip(".") + "."] = address
    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((args.address, args.port), UDPHandler)
    tcp = socketserver.ThreadingTCPServer((args.address, args.port), TCPHandler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    udp.serve_forever()


if __name__ == "__main__":
    main()
