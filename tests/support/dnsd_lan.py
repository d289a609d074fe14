"""dnsd live on 127.0.0.0/8 high ports, without root: the addresses of the two networks its tests serve (each
container an address of 127/8, its gateway another), and clients asking from a container's address
(tests/unit/dnsd/test_server.py and test_hostile.py; the ``lan`` fixture is in tests/unit/dnsd/conftest.py)."""

from __future__ import annotations

import asyncio
import socket

GATEWAY_A, GATEWAY_B, GATEWAY_C = "127.0.1.1", "127.0.2.1", "127.0.3.1"
A1, B1 = "127.0.1.2", "127.0.2.2"
SAFETY = 5.0  # seconds: only so that a broken server fails the test instead of hanging it


async def udp_ask(query: bytes, gateway: str, port: int, source: str = A1) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind((source, 0))
        sock.connect((gateway, port))
        await loop.sock_sendall(sock, query)
        async with asyncio.timeout(SAFETY):
            return await loop.sock_recv(sock, 65535)


async def tcp_ask(queries: list[bytes], gateway: str, port: int, source: str = A1) -> list[bytes]:
    async with asyncio.timeout(SAFETY):
        reader, writer = await asyncio.open_connection(gateway, port, local_addr=(source, 0))
        try:
            writer.write(b"".join(len(query).to_bytes(2, "big") + query for query in queries))
            replies = []
            for _ in queries:
                length = int.from_bytes(await reader.readexactly(2), "big")
                replies.append(await reader.readexactly(length))
            return replies
        finally:
            writer.close()
