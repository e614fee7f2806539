"""Answers DNS queries on 127.0.0.1:PORT (UDP and TCP) from the Route53 API at ROUTE53_ENDPOINT.

Usage: r53dns.py PORT ROUTE53_ENDPOINT

It stands in for Route53's authoritative name servers, which answer a record once its change is
INSYNC (https://docs.aws.amazon.com/Route53/latest/APIReference/API_GetChange.html): a local
ACME CA (Pebble, `-dnsserver 127.0.0.1:PORT`) validates DNS-01 against it. Every query reads the
zones back through the Route53 API (ListHostedZones, ListResourceRecordSets), with no cache, so
what the CA sees is exactly what the code under test wrote with ChangeResourceRecordSets; moto's
changes are INSYNC at once.

Answers: the longest hosted zone that is a suffix of the name, else REFUSED. Exact-name TXT, A,
AAAA, CNAME and CAA records (no alias records, no wildcard synthesis); a CNAME at the name answers
any other type and is followed, as a recursive resolver in front of Route53 would. A name without
records is NXDOMAIN; a name without records of the type is NOERROR and empty. Every answer has
AA=1 and RA=1: Go's resolver (inside Pebble) calls an empty answer without either a lame referral.

Like moto_server.py it prints "ready" once it serves and runs until standard input closes, so it
never outlives the process holding the other end; SIGTERM and SIGINT stop it as cleanly.
"""

import signal
import sys
import threading

import boto3
from botocore.config import Config
from dnslib import AAAA, CAA, CNAME, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

# The Route53 record types served.
TYPES = {"TXT", "A", "AAAA", "CNAME", "CAA"}
# How many CNAMEs a query follows before it gives up (a loop in the test's own records).
CNAME_LIMIT = 8


def unescape(text):
    """Route53's escapes: `\\"`, `\\\\` and octal `\\ddd` (`\\052` is `*`), as bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        digits = text[i + 1 : i + 4]
        if char == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(int(digits, 8))
            i += 4
        elif char == "\\" and i + 1 < len(text):
            out += text[i + 1].encode()
            i += 2
        else:
            out += char.encode()
            i += 1
    return bytes(out)


def txt_strings(value):
    """The character-strings of one TXT value in Route53's `"…" "…"` form (or bare words)."""
    strings = []
    i = 0
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        quoted = value[i] == '"'
        start = i + 1 if quoted else i
        i = start
        while i < len(value):
            if value[i] == "\\":
                i += 2
            elif (quoted and value[i] == '"') or (not quoted and value[i].isspace()):
                break
            else:
                i += 1
        strings.append(unescape(value[start:i]))
        i += 1 if quoted else 0
    return strings


def record_data(rtype, value):
    """dnslib record data for one ResourceRecord value of type `rtype`."""
    if rtype == "TXT":
        return TXT(txt_strings(value))
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(unescape(value).decode())
    flags, tag, rest = value.split(None, 2)
    return CAA(int(flags), tag, b"".join(txt_strings(rest)).decode())


def route53_name(name):
    """A name from the Route53 API (`\\052.example.com.`) as lower-case bytes with the final dot."""
    name = unescape(name).lower()
    return name if name.endswith(b".") else name + b"."


def query_name(label):
    """A dnslib name as lower-case bytes with the final dot, from its raw labels: its `str()`
    escapes in decimal, Route53 in octal."""
    return b"".join(part.lower() + b"." for part in label.label) or b"."


class Route53Resolver(BaseResolver):
    """Reads the hosted zones and their records through the Route53 API on every query."""

    def __init__(self, endpoint):
        # Dummy credentials: the endpoint is an emulator, and real ones must never reach it.
        self.route53 = boto3.client(
            "route53",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            # No proxy: HTTP(S)_PROXY in the environment must not carry a call to loopback away.
            config=Config(proxies={}, retries={"max_attempts": 2}),
        )

    def zone_of(self, name):
        """The id of the longest hosted zone whose name is a suffix of `name`, or None."""
        best = None
        for page in self.route53.get_paginator("list_hosted_zones").paginate():
            for zone in page["HostedZones"]:
                zone_name = route53_name(zone["Name"])
                if (name == zone_name or name.endswith(b"." + zone_name)) and (
                    best is None or len(zone_name) > len(best[0])
                ):
                    best = (zone_name, zone["Id"])
        return best and best[1]

    def record_sets(self, zone_id, name):
        """The record sets of the zone named exactly `name`, by type."""
        found = {}
        paginator = self.route53.get_paginator("list_resource_record_sets")
        for page in paginator.paginate(HostedZoneId=zone_id):
            for record_set in page["ResourceRecordSets"]:
                if route53_name(record_set["Name"]) == name:
                    found[record_set["Type"]] = record_set
        return found

    def lookup(self, label, qtype, reply, depth=0):
        """Adds the answers for `label` to `reply`; returns the rcode, or None outside any zone."""
        name = query_name(label)
        zone_id = self.zone_of(name)
        if zone_id is None:
            return None
        sets = self.record_sets(zone_id, name)
        if not sets:
            return RCODE.NXDOMAIN
        rtype = qtype if qtype in sets else "CNAME" if "CNAME" in sets else None
        if rtype not in TYPES:
            return RCODE.NOERROR
        record_set = sets[rtype]
        for record in record_set.get("ResourceRecords", []):
            data = record_data(rtype, record["Value"])
            reply.add_answer(
                RR(label, getattr(QTYPE, rtype), rdata=data, ttl=record_set.get("TTL", 300))
            )
            if rtype == "CNAME" and qtype != "CNAME" and depth < CNAME_LIMIT:
                # Outside every zone the chain just ends at the CNAME, as it would here.
                self.lookup(data.label, qtype, reply, depth + 1)
        return RCODE.NOERROR

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        reply.header.ra = 1
        try:
            rcode = self.lookup(request.q.qname, QTYPE[request.q.qtype], reply)
        except Exception as error:  # noqa: BLE001  (any failure to read Route53 is SERVFAIL)
            print(f"r53dns: {request.q.qname}: {error!r}", file=sys.stderr, flush=True)
            rcode = RCODE.SERVFAIL
        reply.header.rcode = RCODE.REFUSED if rcode is None else rcode
        return reply


def stop(_signum, _frame):
    # SystemExit in the main thread: the `finally` below shuts the servers down.
    sys.exit(0)


def main():
    port = int(sys.argv[1])
    endpoint = sys.argv[2]
    resolver = Route53Resolver(endpoint)
    # Requests and replies go to standard error (the launcher's log file): standard output is
    # the launcher's pipe, which nobody reads after "ready" and would fill up.
    logger = DNSLogger("request,reply,error", logf=lambda line: print(line, file=sys.stderr))
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=port, tcp=tcp, logger=logger)
        for tcp in (False, True)
    ]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for server in servers:
        server.start_thread()
    try:
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        # Each shutdown waits out its server's poll interval (0.5 s): both at once.
        stopping = [threading.Thread(target=server.stop) for server in servers]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


if __name__ == "__main__":
    main()
