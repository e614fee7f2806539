"""A minimal Lambda runtime for Python, doing at a cold start what the managed runtime does:
import the handler module named by _HANDLER from LAMBDA_TASK_ROOT, then loop on the Runtime API's
/next. The bench measures the time from spawn to the first /next.
"""

import importlib
import json
import os
import sys
import traceback
import urllib.request

RUNTIME_API = "http://{}/2018-06-01/runtime".format(os.environ["AWS_LAMBDA_RUNTIME_API"])


def post(path, body):
    request = urllib.request.Request(
        RUNTIME_API + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request).close()


def error_body(error):
    return {"errorType": type(error).__name__, "errorMessage": str(error)}


def main():
    module_name, function_name = os.environ["_HANDLER"].rsplit(".", 1)
    sys.path.insert(0, os.environ["LAMBDA_TASK_ROOT"])
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:
        traceback.print_exc()
        post("/init/error", error_body(error))
        sys.exit(1)
    while True:
        with urllib.request.urlopen(RUNTIME_API + "/invocation/next") as response:
            request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.load(response)
        try:
            result = handler(event, None)
        except Exception as error:
            traceback.print_exc()
            post(f"/invocation/{request_id}/error", error_body(error))
        else:
            post(f"/invocation/{request_id}/response", result)


if __name__ == "__main__":
    main()
