"""A private, throwaway PostgreSQL cluster for the fault tests: stopped and started at will without
touching the shared service on 127.0.0.1:5432.

The cluster lives in a fresh directory under /tmp owned by the ``postgres`` OS user (PostgreSQL
refuses to run as root), has its own port and unix-socket directory, listens where it is told, and
can run inside a network namespace. ``private_cluster`` always stops it and deletes its directory.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

OS_USER = "postgres"


def bin_dir() -> Path | None:
    """The newest installed server binaries (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def unavailable_reason() -> str | None:
    if bin_dir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} OS user to run a private cluster as"
    if os.geteuid() != 0:
        return "a private cluster needs root, to run PostgreSQL as the postgres user"
    return None


def require() -> None:
    """Skip outside CI when a private cluster cannot be made; in CI that is an error, not a skip."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"a private PostgreSQL cluster is required in CI: {reason}")
    pytest.skip(reason)


@dataclass
class PgCluster:
    root: Path
    port: int
    listen_addresses: str = "127.0.0.1"
    # CIDRs allowed in with trust auth, besides loopback (a namespace address the API dials from).
    trust: Sequence[str] = ()
    netns: str | None = None
    log_lines: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def url(self, host: str | None = None, database: str = "postgres") -> str:
        where = host or self.listen_addresses.split(",")[0].strip()
        return f"postgresql://{OS_USER}@{where}:{self.port}/{database}"

    def _as_postgres(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        binaries = bin_dir()
        assert binaries is not None
        command = ["runuser", "-u", OS_USER, "--", str(binaries / args[0]), *args[1:]]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        # A clean environment: nothing of root's (HOME, PG* variables) leaks into the server.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        return subprocess.run(
            command, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def _checked(self, *args: str, timeout: float = 60) -> None:
        done = self._as_postgres(*args, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{self._tail()}"
            )

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\nserver log:\n" + "".join(self.log_file.read_text().splitlines(True)[-20:])
        return ""

    def init(self) -> None:
        self.socket_dir.mkdir()
        user = pwd.getpwnam(OS_USER)
        os.chown(self.socket_dir, user.pw_uid, user.pw_gid)
        self._checked(
            "initdb", "-D", str(self.data_dir), "-U", OS_USER, "-A", "trust", "-E", "UTF8", "--no-sync"
        )
        settings = {
            "port": str(self.port),
            "listen_addresses": f"'{self.listen_addresses}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            # Throwaway data: durability buys nothing here and costs the shared two cores.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": "60",
        }
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# airlock private test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        if self.trust:
            with open(self.data_dir / "pg_hba.conf", "a", encoding="utf-8") as hba:
                hba.writelines(f"host all all {cidr} trust\n" for cidr in self.trust)

    def start(self) -> None:
        self._checked("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        self._checked("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60")

    def running(self) -> bool:
        return self._as_postgres("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def create_database(self, name: str) -> None:
        self._checked(
            "psql",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            OS_USER,
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f'CREATE DATABASE "{name}"',
        )

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def destroy(self) -> None:
        """Stop the server whatever its state, then remove every file of it."""
        if self.data_dir.exists() and self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        pid = self.postmaster_pid()
        if pid is not None and self.running():
            # pg_ctl could not stop it: the postmaster is ours (its pid file is in our directory).
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(
    port: int,
    *,
    listen_addresses: str = "127.0.0.1",
    trust: Sequence[str] = (),
    netns: str | None = None,
    databases: Sequence[str] = (),
) -> Iterator[PgCluster]:
    """Initialise and start a cluster; whatever happens, stop it and delete its files afterwards."""
    require()
    root = Path(tempfile.mkdtemp(prefix="airlock-pg-"))
    user = pwd.getpwnam(OS_USER)
    os.chown(root, user.pw_uid, user.pw_gid)
    cluster = PgCluster(root, port, listen_addresses=listen_addresses, trust=trust, netns=netns)
    try:
        cluster.init()
        cluster.start()
        for name in databases:
            cluster.create_database(name)
        yield cluster
    finally:
        cluster.destroy()
