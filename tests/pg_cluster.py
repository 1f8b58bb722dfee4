"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, a data directory
in a fresh temporary directory, listening on 127.0.0.1 only, trust authentication, no
fsync; each test gets a database of its own.

PostgreSQL refuses to run as root, and CI runs as root: the cluster then runs as the
`postgres` user (Debian's package creates it) or `nobody`. Tests that need it skip when
the binaries are absent — except under CI=true, where they fail (CI installs them).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "mcms"


def pg_bin() -> Path | None:
    """The newest installed server's bin directory (MCMS_PG_BIN overrides), or None."""
    if override := os.environ.get("MCMS_PG_BIN"):
        return Path(override)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> list[str]:
    """The command prefix that drops root (PostgreSQL will not run as root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"]
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@dataclass
class PgCluster:
    """A running cluster; `new_database()` hands each test an empty database's URL."""

    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, bin_dir: Path) -> PgCluster:
        root = Path(tempfile.mkdtemp(prefix="mcms-pg-"))
        root.chmod(0o755)
        prefix = _as_user()
        if prefix:
            shutil.chown(root, user=prefix[2])
        cluster = cls(root, _free_port(), bin_dir)
        run = [*prefix]
        subprocess.run(
            [*run, str(bin_dir / "initdb"), "-D", str(cluster.data), "-A", "trust", "-U", USER,
             "-E", "UTF8", "--no-sync", "--locale=C"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {root} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        subprocess.run(
            [*run, str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l",
             str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        return cluster

    def stop(self) -> None:
        subprocess.run(
            [*_as_user(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
             "-w", "stop"],
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    async def new_database(self) -> str:
        """Create an empty database; its URL."""
        import asyncpg

        name = "t_" + secrets.token_hex(6)
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


def cluster_or_skip(bin_dir: Path | None) -> Path:
    """The bin directory, or skip (fail under CI=true: CI installs postgresql)."""
    if bin_dir is not None and (bin_dir / "initdb").exists():
        return bin_dir
    why = "PostgreSQL server binaries not found (apt-get install postgresql, or MCMS_PG_BIN)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; under CI=true the PostgreSQL tests must run")
    pytest.skip(why)
