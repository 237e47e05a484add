"""Client certificates for provisioned workers, signed by the CA the operator gives the API."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A certificate is valid a little before it is issued: clocks of the worker's host and the API differ.
CLOCK_SKEW = timedelta(minutes=5)


def check_issuer(
    ca_cert_pem: bytes, ca_key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    """The worker CA's certificate and key, checked: a CA, and the key is its own."""
    ca = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the worker CA's key must be an EC or RSA key")
    if ca_key.public_key().public_numbers() != ca.public_key().public_numbers():  # type: ignore[union-attr]
        raise ValueError("the worker CA's key is not the key of its certificate")
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ValueError("the worker CA's certificate is not a CA certificate")
    return ca, ca_key


def issue_client_certificate(
    ca_cert_pem: bytes, ca_key_pem: bytes, name: str, not_after: datetime
) -> tuple[str, str]:
    """A client certificate for worker ``name`` (its common name) and its new private key, as PEM,
    valid until ``not_after`` or the CA's own expiry, whichever comes first."""
    ca, ca_key = check_issuer(ca_cert_pem, ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Airlock workers"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16)) >> 1)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(not_after, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
