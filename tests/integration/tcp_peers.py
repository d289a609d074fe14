"""Tiny TCP peers for firewall tests, as ``python3 -c`` scripts run inside a test's namespaces.

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
