"""Runs moto server on 127.0.0.1:PORT until standard input closes.

The parent (a test process) holds the other end of stdin, so the server goes away with it even
when the parent is killed. Prints "ready" once the server accepts requests.

In front of moto sit certship's own routes (`certship_moto.wsgi`): `POST /_certship/acm/renew`
renews a certificate in place. With CERTSHIP_SFN_EXECUTE=1 in the environment, Step Functions
executions run their state machines (moto's `execute_state_machine`), switched on through moto's
own `/moto-api/config` before "ready".
"""

import json
import os
import sys
import threading
import urllib.request

port = int(sys.argv[1])
# moto's Step Functions calls Lambda and other services at localhost:$MOTO_PORT.
os.environ.setdefault("MOTO_PORT", str(port))

import certship_moto  # noqa: E402  (after MOTO_PORT is set)
from moto.core.config import default_user_config  # noqa: E402
from moto.moto_server.werkzeug_app import (  # noqa: E402
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server  # noqa: E402

certship_moto.install()

# What moto.server.ThreadedMotoServer does, with certship's routes wrapped around moto's app.
app = certship_moto.wsgi(DomainDispatcherApplication(create_backend_app))
server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
thread = threading.Thread(target=server.serve_forever, daemon=True)
thread.start()
try:
    if os.environ.get("CERTSHIP_SFN_EXECUTE") == "1":
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        # No proxy: HTTP(S)_PROXY in the environment must not carry a call to ourselves away.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            response.read()
        if not default_user_config.get("stepfunctions", {}).get("execute_state_machine"):
            sys.exit("moto did not switch on Step Functions execution")
    print("ready", flush=True)
    sys.stdin.read()
finally:
    server.shutdown()
    thread.join()
