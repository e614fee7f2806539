"""certship's extension of moto's ACM, loaded into moto server by moto_server.py.

moto signs each certificate it issues with the certificate's own key and names an issuer that did
not sign it, so no chain check can pass. Real ACM certificates are issued by a CA whose
certificate heads the chain. This extension gives the emulator one CA of its own (made at start,
kept in memory) that issues every requested certificate, so hosts verify the chain exactly as they
would in AWS.
"""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from moto.acm import models as acm_models


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


def install() -> None:
    """Patches moto's ACM; call before the server handles a request."""
    acm_models.CertBundle.generate_cert = classmethod(_generate_cert)
