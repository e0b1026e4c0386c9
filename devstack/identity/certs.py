"""X.509 certificates as an app registration and Key Vault hold them: self-signed client
certificates, their thumbprints, and the PKCS#12 / PEM forms Key Vault stores as secrets."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

PKCS12_CONTENT_TYPE = "application/x-pkcs12"
PEM_CONTENT_TYPE = "application/x-pem-file"


def b64url_decode(text: str) -> bytes:
    """base64url with or without padding (MSAL keeps the padding, RFC 7515 drops it)."""
    stripped = text.strip().rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(cert: x509.Certificate, algorithm: Literal["sha1", "sha256"] = "sha1") -> bytes:
    digest = hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()  # noqa: S303
    return cert.fingerprint(digest)


def load_certificate(pem: str | bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)


@dataclass(frozen=True)
class AppCertificate:
    """A client certificate with its private key, as ``Stack.create_app_certificate`` makes."""

    name: str
    thumbprint_sha1: str  # upper-case hex, as the portal and Graph show it
    thumbprint_sha256: str
    certificate_pem: str
    private_key_pem: str
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.certificate_pem)

    def msal_credential(self, *, send_certificate: bool = False) -> dict[str, str]:
        """``client_credential`` for MSAL: RS256 with ``x5t`` (plus ``x5c`` when
        ``send_certificate``, for subject name/issuer auth)."""
        credential = {"private_key": self.private_key_pem, "thumbprint": self.thumbprint_sha1}
        if send_certificate:
            credential["public_certificate"] = self.certificate_pem
        return credential

    def private_key(self) -> rsa.RSAPrivateKey:
        """The certificate's RSA private key, loaded from ``private_key_pem``."""
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the private key is not an RSA key")
        return key

    def pkcs12_base64(self) -> str:
        """The PFX (no password) base64-encoded: a Key Vault secret of type x-pkcs12."""
        pfx = pkcs12.serialize_key_and_certificates(
            self.name.encode(), self.private_key(), self.certificate, None,
            serialization.NoEncryption(),
        )
        return base64.b64encode(pfx).decode()

    def pem_bundle(self) -> str:
        """Private key then certificate: a Key Vault secret of type x-pem-file."""
        return self.private_key_pem + self.certificate_pem


def generate_app_certificate(
    name: str, *, days_valid: int = 365, expired: bool = False, subject: str | None = None,
    valid_from: dt.datetime | None = None,
) -> AppCertificate:
    """A self-signed RSA 2048 certificate valid for ``days_valid`` days (from now, or from
    ``valid_from``); ``expired`` makes one whose validity ended a day ago."""
    if expired and valid_from is not None:
        raise ValueError("give either expired=True or valid_from, not both")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if expired:
        not_after = now - dt.timedelta(days=1)
        not_before = not_after - dt.timedelta(days=days_valid)
    elif valid_from is not None:
        not_before = valid_from
        not_after = valid_from + dt.timedelta(days=days_valid)
    else:
        not_before = now - dt.timedelta(minutes=5)
        not_after = now + dt.timedelta(days=days_valid)
    dn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject or name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(dn)
        .issuer_name(dn)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return AppCertificate(
        name=name,
        thumbprint_sha1=binascii.hexlify(thumbprint(cert, "sha1")).decode().upper(),
        thumbprint_sha256=binascii.hexlify(thumbprint(cert, "sha256")).decode().upper(),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        not_before=not_before,
        not_after=not_after,
    )
