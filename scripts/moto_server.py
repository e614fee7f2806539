"""Runs moto server on 127.0.0.1:PORT until standard input closes.

The parent (a test process) holds the other end of stdin, so the server goes away with it even
when the parent is killed. Prints "ready" once the server accepts requests.
"""

import os
import sys

port = int(sys.argv[1])
# moto's Step Functions calls Lambda and other services at localhost:$MOTO_PORT.
os.environ.setdefault("MOTO_PORT", str(port))

import certship_moto  # noqa: E402  (after MOTO_PORT is set)
from moto.server import ThreadedMotoServer  # noqa: E402

certship_moto.install()

server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    server.stop()
