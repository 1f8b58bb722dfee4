"""Fixtures for the PostgreSQL store: one throwaway cluster per test session (started on
first use, stopped at the end), a fresh database per test, and `store_target`, which runs a
test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg_cluster import PgCluster, cluster_or_skip, pg_bin


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster.start(cluster_or_skip(pg_bin()))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def pg_url(pg_cluster: PgCluster) -> str:
    """The URL of an empty database of its own."""
    return await pg_cluster.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store test opens its Store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "var" / "mcms-bot.db"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return await cluster.new_database()
