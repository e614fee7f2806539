"""certship's extension of moto's ACM, loaded into moto server by moto_server.py.

moto signs each certificate it issues with the certificate's own key and names an issuer that did
not sign it, so no chain check can pass. Real ACM certificates are issued by a CA whose
certificate heads the chain. This extension gives the emulator one CA of its own (made at start,
kept in memory) that issues every requested certificate, so hosts verify the chain exactly as they
would in AWS.

moto has no RenewCertificate either. `renew` re-issues a certificate in place, as ACM's managed
renewal does (same ARN, new key, new serial, same CA), and `wsgi` serves it to tests and the local
cloud as `POST /_certship/acm/renew`. DescribeCertificate is patched to show the serial as ACM does
(`0a:1b:...`, not moto's decimal) and, once renewed, the certificate's `RenewalSummary`.

Step Functions: the context object's `$$.Execution.StartTime` is made the ISO 8601 string AWS
gives, instead of moto's datetime, which broke DescribeExecution of any execution recording it.
"""

import datetime
import ipaddress
import json
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from moto.acm import models as acm_models
from moto.core.utils import utcnow


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LocalCA:
    """A throwaway certificate authority for the emulator's certificates."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certship local cloud"),
                x509.NameAttribute(NameOID.COMMON_NAME, "certship local CA"),
            ]
        )
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, domain_name: str, sans: list[str] | None, days: int = 395):
        """A new RSA-2048 key and a leaf certificate for it, signed by this CA."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        names = list(dict.fromkeys([domain_name, *(sans or [])]))
        general_names = []
        for name in names:
            try:
                general_names.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                general_names.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem


CA = LocalCA()


def _generate_cert(cls, domain_name, account_id, region, sans=None, cert_authority_arn=None):
    certificate, private_key = CA.issue(domain_name, sans)
    return cls(
        account_id=account_id,
        certificate=certificate,
        private_key=private_key,
        chain=CA.pem,
        region=region,
        cert_type="PRIVATE" if cert_authority_arn is not None else "AMAZON_ISSUED",
        cert_status="ISSUED" if cert_authority_arn is not None else "PENDING_VALIDATION",
        cert_authority_arn=cert_authority_arn,
    )


def acm_serial(serial: int) -> str:
    """A serial number as ACM's DescribeCertificate shows it: lowercase hex bytes joined by colons
    (`0a:1b:2c`), big-endian, without a sign byte."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RenewalError(Exception):
    """A renewal that cannot happen; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# One renewal at a time, so two renewals of one certificate cannot interleave their fields.
_RENEW_LOCK = threading.Lock()


def _find(certificate_arn: str):
    """The CertBundle with this ARN in whichever account and region holds it, or None. Looks only
    at backends that already exist (never creates one for an ARN's account or region)."""
    for _account, _region, backend in acm_models.acm_backends.iter_backends():
        bundle = backend._certificates.get(certificate_arn)
        if bundle is not None:
            return backend, bundle
    return None


def renew(certificate_arn: str) -> dict:
    """Renews an issued certificate as ACM would: the same ARN, domain name, SANs, tags, options
    and type, with a new key and a new certificate (new serial, new validity) from `CA`.

    Raises RenewalError(404) for an unknown ARN, RenewalError(400) for a certificate ACM would not
    renew (not ISSUED, or imported)."""
    with _RENEW_LOCK:
        found = _find(certificate_arn)
        if found is None:
            raise RenewalError(404, f"Certificate with arn {certificate_arn} not found")
        backend, _ = found
        # get_certificate runs moto's status check (PENDING_VALIDATION -> ISSUED -> EXPIRED).
        bundle = backend.get_certificate(certificate_arn)
        if bundle.status != "ISSUED":
            raise RenewalError(
                400, f"Certificate {certificate_arn} is {bundle.status}, only ISSUED renews"
            )
        if bundle.type == "IMPORTED":
            raise RenewalError(400, f"Certificate {certificate_arn} is imported; ACM renews none")

        certificate_pem, key_pem = CA.issue(bundle.common_name, bundle.sans)
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        renewed_at = utcnow()  # naive UTC, like moto's created_at
        # Everything is built before the bundle changes; these assignments only swap references.
        bundle.cert, bundle.key = certificate_pem, key_pem
        bundle._cert, bundle._key = certificate, key
        bundle.certship_renewed_at = renewed_at
        return {
            "CertificateArn": bundle.arn,
            "Serial": acm_serial(certificate.serial_number),
            "NotAfter": _rfc3339(certificate.not_valid_after_utc),
        }


def _describe_with_renewal(original):
    def describe(self):
        result = original(self)
        described = result["Certificate"]
        described["Serial"] = acm_serial(self._cert.serial_number)
        renewed_at = getattr(self, "certship_renewed_at", None)
        if renewed_at is not None:
            epoch = acm_models.datetime_to_epoch(renewed_at)
            described["IssuedAt"] = epoch
            described["RenewalSummary"] = {
                "RenewalStatus": "SUCCESS",
                "DomainValidationOptions": described.get("DomainValidationOptions", []),
                "UpdatedAt": epoch,
            }
        return result

    describe.certship = True
    return describe


RENEW_PATH = "/_certship/acm/renew"
_MAX_BODY = 64 * 1024
_BODY_SHAPE = 'the body must be {"CertificateArn": "..."}'


def _json_response(start_response, status: int, body: dict):
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
    payload = json.dumps(body).encode()
    start_response(
        f"{status} {reasons.get(status, 'Internal Server Error')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def _renew_request(environ) -> tuple[int, dict]:
    if environ.get("REQUEST_METHOD") != "POST":
        return 405, {"message": f"{RENEW_PATH} takes POST"}
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 400, {"message": "Content-Length is not a number"}
    if length <= 0 or length > _MAX_BODY:
        return 400, {"message": f"{_BODY_SHAPE} of at most {_MAX_BODY} bytes, not {length}"}
    try:
        request = json.loads(environ["wsgi.input"].read(length))
    except ValueError as e:
        return 400, {"message": f"the body is not JSON: {e}"}
    arn = request.get("CertificateArn") if isinstance(request, dict) else None
    if not isinstance(arn, str) or not arn:
        return 400, {"message": _BODY_SHAPE}
    try:
        return 200, renew(arn)
    except RenewalError as e:
        return e.status, {"message": e.message}


def wsgi(app):
    """moto's WSGI application with certship's routes in front: paths under `/_certship/` are
    ours, everything else goes to moto untouched (no AWS API path starts with `/_certship/`)."""

    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_certship/"):
            return app(environ, start_response)
        if path.rstrip("/") != RENEW_PATH:
            return _json_response(start_response, 404, {"message": f"no route {path}"})
        try:
            status, body = _renew_request(environ)
        except Exception as e:  # noqa: BLE001  (the answer names it; the server keeps serving)
            status, body = 500, {"message": f"{type(e).__name__}: {e}"}
        return _json_response(start_response, status, body)

    return application


def _context_with_iso_start_time(original):
    """moto puts a datetime into the context object's `$$.Execution.StartTime`, where AWS puts an
    ISO 8601 string; a state that copies it makes DescribeExecution fail on serialising the output."""

    def environment(self):
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        start = execution.get("StartTime")
        if isinstance(start, datetime.datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.timezone.utc)
            execution["StartTime"] = start.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return env

    environment.certship = True
    return environment


def install() -> None:
    """Patches moto's ACM and Step Functions; call before the server handles a request. Idempotent."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if not getattr(ExecutionWorker._get_evaluation_environment, "certship", False):
        ExecutionWorker._get_evaluation_environment = _context_with_iso_start_time(
            ExecutionWorker._get_evaluation_environment
        )
    acm_models.CertBundle.generate_cert = classmethod(_generate_cert)
    if not getattr(acm_models.CertBundle.describe, "certship", False):
        acm_models.CertBundle.describe = _describe_with_renewal(acm_models.CertBundle.describe)
