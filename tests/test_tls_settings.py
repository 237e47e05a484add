"""TLS settings without a network: plaintext off loopback is refused before anything is sent, PEM is
read inline or from a file, and the API signs a worker's client certificate with its worker CA."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from temporalio.service import TLSConfig

from airlock.devstack import api_env, ensure_secrets
from airlock.settings import ApiLinkSettings, TemporalSettings
from airlock.tls import PlaintextRefused, is_loopback, read_pem
from api.core.config import Settings
from api.core.pki import issue_client_certificate
from api.services.workers import WorkerTLSFiles

# 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never routed. Nothing here connects to it anyway: the refusal
# comes first, which the CLI and worker tests below check by the exit status and message.
REMOTE = "192.0.2.10"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("api.example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_plain_http_to_a_remote_api_is_refused_unless_trusted() -> None:
    with pytest.raises(PlaintextRefused, match="AIRLOCK_ALLOW_PLAINTEXT=true"):
        ApiLinkSettings(api_url=f"http://{REMOTE}:8080").api_tls()
    assert ApiLinkSettings(api_url=f"http://{REMOTE}:8080", allow_plaintext=True).api_tls() is True
    assert ApiLinkSettings(api_url="http://127.0.0.1:8080").api_tls() is True
    assert isinstance(ApiLinkSettings(api_url=f"https://{REMOTE}").api_tls(), ssl.SSLContext)


def test_plaintext_to_a_remote_temporal_is_refused_unless_trusted() -> None:
    with pytest.raises(PlaintextRefused, match="Temporal"):
        TemporalSettings(temporal_address=f"{REMOTE}:7233").temporal_tls_config()
    assert (
        TemporalSettings(temporal_address=f"{REMOTE}:7233", allow_plaintext=True).temporal_tls_config()
        is False
    )
    assert TemporalSettings().temporal_tls_config() is False
    # An API key alone turns TLS on: it is a bearer token and never goes out in clear.
    cloud = TemporalSettings(temporal_address="ns.acct.tmprl.cloud:7233", temporal_api_key="key")
    config = cloud.temporal_tls_config()
    assert isinstance(config, TLSConfig) and config.server_root_ca_cert is None


def test_pem_inline_or_from_a_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = ca.cert_pem.bytes()
    path = tmp_path / "ca.pem"
    path.write_bytes(pem)
    assert read_pem(str(path), "CA") == pem
    assert read_pem(pem.decode(), "CA").strip() == pem.strip()
    temporal = TemporalSettings(temporal_tls_ca=str(path), temporal_tls_server_name="temporal.internal")
    config = temporal.temporal_tls_config()
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pem and config.domain == "temporal.internal"
    with pytest.raises(SystemExit, match="cannot read"):
        TemporalSettings(temporal_tls_ca=str(tmp_path / "missing.pem")).temporal_tls_config()
    (tmp_path / "empty.pem").write_text("not a certificate")
    with pytest.raises(SystemExit, match="no PEM block"):
        ApiLinkSettings(api_url="https://api.internal", api_ca=str(tmp_path / "empty.pem")).api_tls()
    with pytest.raises(SystemExit, match="go together"):
        TemporalSettings(temporal_tls_cert=str(path)).temporal_tls_config()


def test_an_inline_client_certificate_loads_without_touching_the_disk(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("worker-a")
    link = ApiLinkSettings(
        api_url="https://api.internal",
        api_ca=ca.cert_pem.bytes().decode(),
        api_client_cert=leaf.cert_chain_pems[0].bytes().decode(),
        api_client_key=leaf.private_key_pem.bytes().decode(),
    )
    context = link.api_tls()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    other = trustme.CA().issue_cert("other")
    mismatched = link.model_copy(update={"api_client_key": other.private_key_pem.bytes().decode()})
    with pytest.raises(SystemExit, match="invalid TLS settings for the API"):
        mismatched.api_tls()
    assert "PRIVATE KEY" not in repr(link) and "PRIVATE KEY" not in str(link)


def test_the_worker_ca_signs_a_client_certificate_for_the_worker() -> None:
    ca = trustme.CA()
    not_after = datetime.now(UTC) + timedelta(days=3)
    cert_pem, key_pem = issue_client_certificate(
        ca.cert_pem.bytes(), ca.private_key_pem.bytes(), "edge-a", not_after
    )
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    cert.verify_directly_issued_by(issuer)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "edge-a"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert abs(cert.not_valid_after_utc - not_after) < timedelta(seconds=1)
    assert "PRIVATE KEY" in key_pem
    # Never past the CA's own expiry.
    late = issue_client_certificate(
        ca.cert_pem.bytes(), ca.private_key_pem.bytes(), "edge-a", datetime.now(UTC) + timedelta(days=36500)
    )[0]
    assert x509.load_pem_x509_certificate(late.encode()).not_valid_after_utc <= issuer.not_valid_after_utc


async def _run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "airlock.cli",
        *args,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


async def test_a_worker_refuses_to_start_on_plaintext_off_loopback() -> None:
    provisioned = {
        "AIRLOCK_WORKER_TOKEN": "aw1.edge-a." + "x" * 43,
        "AIRLOCK_PAYLOAD_KEYS": '{"k1/queue:default": "' + "A" * 43 + '="}',
    }
    code, out = await _run_cli("worker", env=provisioned | {"AIRLOCK_API_URL": f"http://{REMOTE}:8080"})
    assert code == 2, out
    assert f"refusing to reach the API at {REMOTE} without TLS" in out and "AIRLOCK_ALLOW_PLAINTEXT" in out
    code, out = await _run_cli("worker", env=provisioned | {"AIRLOCK_TEMPORAL_ADDRESS": f"{REMOTE}:7233"})
    assert code == 2, out
    assert f"refusing to reach Temporal at {REMOTE} without TLS" in out


async def test_the_cli_refuses_to_send_its_token_over_plain_http_off_loopback() -> None:
    code, out = await _run_cli(
        "workers", "list", env={"AIRLOCK_API_URL": f"http://{REMOTE}:8080", "AIRLOCK_API_TOKEN": "t" * 30}
    )
    assert code == 2 and "refusing to reach the API" in out, out


async def test_the_api_refuses_plain_http_off_loopback_and_plaintext_temporal(tmp_path: Path) -> None:
    env = api_env(
        ensure_secrets(tmp_path / "secrets"),
        temporal_address="127.0.0.1:7233",
        database_url=f"sqlite:///{tmp_path / 'airlock.db'}",
    )
    env = {k: v for k, v in env.items() if k.startswith("AIRLOCK_")}
    code, out = await _run_cli("api", "--host", "0.0.0.0", "--port", "1", env=env)
    assert code == 2 and "refusing to serve the API on 0.0.0.0 over plain HTTP" in out, out
    remote_temporal = env | {"AIRLOCK_TEMPORAL_ADDRESS": f"{REMOTE}:7233"}
    code, out = await _run_cli("api", "--port", "1", env=remote_temporal)
    assert code == 2 and f"refusing to reach Temporal at {REMOTE} without TLS" in out, out
    # Nothing was migrated either: the refusals come first.
    assert not (tmp_path / "airlock.db").exists()


def test_the_api_checks_its_worker_ca_before_it_hands_anything_out(tmp_path: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("not-a-ca.test")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "other.key": other.private_key_pem.bytes(),
        "leaf.pem": leaf.cert_chain_pems[0].bytes(),
        "leaf.key": leaf.private_key_pem.bytes(),
        "ca.key": ca.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def settings(cert: str, key: str) -> Settings:
        return Settings(worker_client_ca_cert_file=tmp_path / cert, worker_client_ca_key_file=tmp_path / key)

    assert WorkerTLSFiles.load(settings("ca.pem", "ca.key")).client_ca is not None
    with pytest.raises(SystemExit, match="not the key of its certificate"):
        WorkerTLSFiles.load(settings("ca.pem", "other.key"))
    with pytest.raises(SystemExit, match="not a CA certificate"):
        WorkerTLSFiles.load(settings("leaf.pem", "leaf.key"))
    with pytest.raises(SystemExit, match="cannot read"):
        WorkerTLSFiles.load(settings("ca.pem", "missing.key"))
