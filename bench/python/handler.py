"""The seed's kind of Python handler, for the cold-start comparison: import boto3 and build, at
import, the clients the Rust function of the same name builds in its `AppState::new`.

The bench names those clients in CERTSHIP_BENCH_BOTO3_CLIENTS (comma-separated boto3 service
names), so the list exists once, in bench/src/coldstart.rs, where a test keeps it in step with the
Rust functions.
"""

import os

import boto3

CLIENTS = {
    name: boto3.client(name)
    for name in os.environ["CERTSHIP_BENCH_BOTO3_CLIENTS"].split(",")
}


def handler(event, context):
    """Never reached: the bench stops at the first /next."""
    return {"clients": sorted(CLIENTS)}
