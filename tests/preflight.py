"""Before the suite: make sure the local PostgreSQL, MariaDB and Redis are up, starting any that stopped,
and that Debian's chromium is installed for the browser test of /docs and /redoc.

CI runs on a machine that provides the databases; a stopped one is started with the command the
machine documents. Elsewhere, the tests use AIRLOCK_TEST_*_URL or testcontainers instead. Chromium comes
from the distribution's packages (as root, with apt), never from a browser download.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SERVICES = {
    "PostgreSQL": (
        5432,
        "pg_ctlcluster --skip-systemctl-redirect {version} main start",
    ),
    "MariaDB": (3306, "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"),
    "Redis": (
        6379,
        'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
        "--dir /var/lib/redis --logfile /var/log/redis/ci.log",
    ),
}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"preflight: {CHROMIUM} is missing and cannot be installed here (apt-get, as root)")
        return
    print("preflight: installing chromium with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
    print(f"preflight: chromium {'is installed' if CHROMIUM.exists() else 'did NOT install'}")


def main() -> None:
    ensure_chromium()
    for name, (port, command) in SERVICES.items():
        if _listening(port):
            continue
        if os.geteuid() != 0 or shutil.which(command.split()[0]) is None:
            print(f"preflight: {name} is not listening on 127.0.0.1:{port} and cannot be started here")
            continue
        versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
        print(f"preflight: starting {name}")
        subprocess.run(command.format(version=versions[-1] if versions else ""), shell=True, check=False)
        deadline = time.monotonic() + 30
        while not _listening(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        print(f"preflight: {name} {'is up' if _listening(port) else 'did NOT start'}")


if __name__ == "__main__":
    main()
