"""A throwaway PKI for real-TLS tests: one trustme CA, with its certificate and key on disk, issuing
server and client certificates as PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass(frozen=True)
class ServerCert:
    """A server certificate: ``cert_file`` holds the leaf followed by its chain."""

    hostnames: tuple[str, ...]
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientCert:
    """A client certificate (leaf and chain in ``cert_file``) and its key."""

    common_name: str
    cert_file: Path
    key_file: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert_file.read_bytes()

    @property
    def key_pem(self) -> bytes:
        return self.key_file.read_bytes()


@dataclass
class TestPKI:
    """A CA whose certificate (``ca_file``) and private key (``ca_key_file``) live in ``directory``.

    The key is on disk because the API signs worker client certificates with it."""

    # A plain helper, not a test class, though its name starts with "Test".
    __test__ = False

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)
    _issued: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.ca.private_key_pem.write_to_path(str(self.ca_key_file))
        # Only the owner may read a CA key: what a deployment would demand of it too.
        self.ca_key_file.chmod(0o600)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca.key"

    @property
    def ca_pem(self) -> bytes:
        return self.ca.cert_pem.bytes()

    @property
    def ca_key_pem(self) -> bytes:
        return self.ca.private_key_pem.bytes()

    def server(self, *hostnames: str) -> ServerCert:
        """A certificate valid for ``hostnames`` (DNS names or IP addresses)."""
        if not hostnames:
            raise ValueError("a server certificate needs at least one hostname")
        leaf = self.ca.issue_cert(*hostnames)
        cert_file, key_file = self._write(f"server-{hostnames[0]}", leaf)
        return ServerCert(tuple(hostnames), cert_file, key_file)

    def client(self, common_name: str) -> ClientCert:
        """A certificate whose subject CN is ``common_name``, usable for client authentication."""
        leaf = self.ca.issue_cert(common_name=common_name)
        cert_file, key_file = self._write(f"client-{common_name}", leaf)
        return ClientCert(common_name, cert_file, key_file)

    def _write(self, name: str, leaf: trustme.LeafCert) -> tuple[Path, Path]:
        # Numbered, so two certificates for the same name never overwrite each other.
        self._issued += 1
        folder = self.directory / f"{self._issued:03d}-{name}"
        folder.mkdir()
        cert_file, key_file = folder / "cert.pem", folder / "key.pem"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file


def server_context(
    server: ServerCert, *, client_ca: Path | None = None, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """A TLS server context presenting ``server``; with ``client_ca``, clients must present a
    certificate that CA signed."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server.cert_file, server.key_file)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client_ca)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def client_context(
    ca_file: Path, client: ClientCert | None = None, *, alpn: list[str] | None = None
) -> ssl.SSLContext:
    """A TLS client context trusting ``ca_file`` (hostname checked), presenting ``client`` if given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
