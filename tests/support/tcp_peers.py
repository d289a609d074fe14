"""Tiny TCP and UDP peers for firewall tests, as ``python3 -c`` scripts run inside a test's namespaces.

``SEEN_ADDRESS_SERVER ADDRESS PORT``: prints ``ready`` once listening, then answers every connection
with the source address it sees (so a test reads whether it was masqueraded) and closes it.
``CONNECT ADDRESS PORT``: prints what the server sent (``connected`` if nothing), or ``failed: ...``
when no connection is made within 1.5 s.
"""

SEEN_ADDRESS_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(16)
print("ready", flush=True)
while True:
    peer, (host, port) = server.accept()
    peer.sendall(host.encode())
    peer.close()
"""

CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5) as s:
        print(s.recv(100).decode() or "connected")
except OSError as err:
    print("failed:", err)
"""

# ``UDP_NAME_SERVER ADDRESS PORT NAME``: prints ``ready`` once bound, then answers every datagram with
# ``NAME SOURCE`` (who answered, and the source address it saw).
UDP_NAME_SERVER = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    data, peer = server.recvfrom(512)
    server.sendto(f"{sys.argv[3]} {peer[0]}".encode(), peer)
"""

# ``UDP_ASK ADDRESS PORT``: one datagram, prints the answer or ``no answer`` after 1.5 s.
UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
s.sendto(b"q", (sys.argv[1], int(sys.argv[2])))
try:
    print(s.recv(512).decode())
except OSError:
    print("no answer")
"""

# ``UDP_STREAM ADDRESS PORT SOURCE_PORT``: sends a datagram every 50 ms from one source port and prints
# ``MONOTONIC ANSWER`` for each answer, until killed.
UDP_STREAM = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[3])))
s.settimeout(0.05)
print("ready", flush=True)
while True:
    s.sendto(b"q", (sys.argv[1], int(sys.argv[2])))
    try:
        print(f"{time.monotonic():.3f} {s.recv(512).decode()}", flush=True)
        time.sleep(0.05)
    except OSError:
        pass
"""
