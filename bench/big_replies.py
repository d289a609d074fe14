"""dnsd's memory under the worst upstream for its cache (issue 24 item 4): every name answered with TC over UDP,
then 63 kB over TCP. Prints one line: names asked, cache entries, RSS before and after, in MB.

    .venv/bin/python bench/big_replies.py [--names N] [--code DIR]

The forwarder and the cache are dnsd's own (a Forwarder behind a CachingResolver with the default cache, as
dnsd.app.make_server builds them); the upstream is an asyncio server on 127.0.0.153 in this process, so
nothing leaves loopback and no root is needed. Uses only what every version of dnsd's cache has, so the same
script measures a checkout before and after a change (``--code DIR`` for each: DIR first on PYTHONPATH, see
bench/_checkout.py; without it, the dnsd this python imports, .venv's).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket

from _checkout import run_from

UPSTREAM = "127.0.0.153"
RECORDS = 3900  # 16-byte A records: a 62.4 kB reply


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def query(name: str) -> bytes:
    wire = b"".join(len(label).to_bytes(1, "big") + label.encode() for label in name.split(".")) + b"\x00"
    return os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + wire + b"\x00\x01\x00\x01"


def big_reply(asked: bytes) -> bytes:
    return (asked[:2] + b"\x81\x80\x00\x01" + RECORDS.to_bytes(2, "big") + b"\x00\x00\x00\x00" + asked[12:]
            + b"".join(b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + i.to_bytes(4, "big")
                       for i in range(RECORDS)))


class Upstream63k(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, source):
        self.transport.sendto(data[:2] + b"\x83\x80" + data[4:], source)  # TC set, no records


CONNECTIONS: set[asyncio.Task] = set()  # the upstream's TCP connections: each ends when the forwarder hangs up


async def serve_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    CONNECTIONS.add(asyncio.current_task())
    try:
        while True:
            asked = await reader.readexactly(int.from_bytes(await reader.readexactly(2), "big"))
            reply = big_reply(asked)
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(names: int) -> None:
    try:  # the checkout asked for, once it is first on the path; dnsd by layer (issue 25)
        from dnsd.core.answer import Forward
        from dnsd.core.snapshot import Upstream
        from dnsd.upstream.cache import AnswerCache, CachingResolver
        from dnsd.upstream.forward import Forwarder
    except ImportError:  # a checkout from before: its flat modules
        from dnsd.answer import Forward
        from dnsd.cache import AnswerCache, CachingResolver
        from dnsd.forward import Forwarder
        from dnsd.snapshot import Upstream

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((UPSTREAM, 0))
        port = probe.getsockname()[1]
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(Upstream63k, local_addr=(UPSTREAM, port))
    tcp = await asyncio.start_server(serve_tcp, UPSTREAM, port)
    cache = AnswerCache()
    resolver = CachingResolver(Forwarder(timeout=5), cache)
    groups = ((Upstream(UPSTREAM, port),),)
    try:
        gc.collect()
        before = rss_mb()
        for i in range(names):
            asked = query(f"big{i}.example")
            await resolver.resolve(Forward(asked, asked[12:], groups, edns=False), tcp=False)
        gc.collect()
        after = rss_mb()
    finally:
        udp.close()
        tcp.close()
        pending = [task for task in CONNECTIONS if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=5)
    print(f"names {names}  cache entries {len(cache)}  RSS before {before:.1f} MB  after {after:.1f} MB  "
          f"grown {after - before:.1f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=2000)
    parser.add_argument("--code", metavar="DIR", help="the checkout whose dnsd is measured (default: the one this "
                        "python imports)")
    args = parser.parse_args()
    run_from(args.code)  # --code DIR: this command again, with DIR first on PYTHONPATH
    asyncio.run(main(args.names))
