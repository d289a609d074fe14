"""A tiny upstream DNS server for forwarding tests, run inside a test's own namespace.

Answers NAME.upstream.test with A 192.0.2.1 (over UDP and TCP), nx.upstream.test
with NXDOMAIN, big.upstream.test with 40 A records (truncated over UDP); each
--answer NAME=IP with A IP; any other name with NOERROR and no answer, or with
NXDOMAIN given --nxdomain-unknown (an upstream that does not know the name).
"""

import argparse
import socketserver
import threading

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

ANSWERS: dict[str, str] = {}  # --answer: lower-cased name with its trailing dot -> IPv4 address
NXDOMAIN_UNKNOWN = False


def reply_for(data: bytes, udp: bool) -> bytes:
    query = DNSRecord.parse(data)
    reply = query.reply()
    reply.header.ra = 1
    name = str(query.q.qname).lower()
    if name in ANSWERS:
        if query.q.qtype == QTYPE.A:
            reply.add_answer(RR(query.q.qname, QTYPE.A, rdata=A(ANSWERS[name]), ttl=60))
    elif name == "nx.upstream.test.":
        reply.header.rcode = RCODE.NXDOMAIN
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
        sock.sendto(reply_for(data, udp=True), self.client_address)


class TCPHandler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            data = self.rfile.read(int.from_bytes(head, "big"))
            out = reply_for(data, udp=False)
            self.wfile.write(len(out).to_bytes(2, "big") + out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--answer", action="append", default=[], metavar="NAME=IP")
    parser.add_argument("--nxdomain-unknown", action="store_true")
    args = parser.parse_args()
    global NXDOMAIN_UNKNOWN
    NXDOMAIN_UNKNOWN = args.nxdomain_unknown
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
