"""status's package share line in words (pure): what is missing, what differs, what was
not checked, and what to do about it."""

from __future__ import annotations

from adapters.winrm.hoststate import SharedPackage, ShareState
from commands.share_status import Candidate, share_words

STABLE = Candidate("1.4.1", "previous stable", "aa" * 32)
NEWEST = Candidate("1.4.3", "newest", "bb" * 32)


def share(host: str, *held: tuple[str, str]) -> ShareState:
    return ShareState(
        host,
        True,
        tuple(SharedPackage(v, True, d) for v, d in held)
        + tuple(SharedPackage(c.version, False, None) for c in (STABLE, NEWEST) if c.version
                not in {v for v, _ in held}),
    )  # fmt: skip


def test_every_candidate_on_every_host_is_said_once() -> None:
    both = share("web01", ("1.4.1", "aa" * 32), ("1.4.3", "bb" * 32))
    words, ok = share_words([STABLE, NEWEST], [both], syncs=False)
    assert ok
    assert (
        words == "1.4.1 (previous stable), 1.4.3 (newest) on every host, SHA-256 verified on each"
    )


def test_missing_differing_and_unread_hosts_are_each_named() -> None:
    shares: list[ShareState | str] = [
        share("web01", ("1.4.1", "aa" * 32)),
        share("web02", ("1.4.1", "cc" * 32), ("1.4.3", "bb" * 32)),
        "web03: share not read within 120 s",
        ShareState("web04", False, ()),
    ]
    words, ok = share_words([STABLE, NEWEST], shares, syncs=False)
    assert not ok
    assert words.startswith("share stale: 1.4.3 missing on web01; 1.4.1 differs on web02 (SHA-256 ")
    assert "web04: package folder not reachable" in words
    assert "copy the package there before a run (or set package_source_dir)" in words
    assert words.endswith("| not checked: web03: share not read within 120 s")


def test_with_a_sync_configured_the_line_says_a_run_copies_it() -> None:
    words, ok = share_words([NEWEST], [share("web01")], syncs=True)
    assert not ok
    assert words == (
        "share stale: 1.4.3 missing on web01 — a run copies its package there first "
        "(package_source_dir)"
    )


def test_an_unread_host_alone_is_not_called_stale() -> None:
    words, ok = share_words([NEWEST], ["web01: share not read (connection refused)"], syncs=False)
    assert not ok and "stale" not in words
    assert words == "not checked: web01: share not read (connection refused)"


def test_no_verified_package_in_the_store() -> None:
    assert share_words([], [], syncs=False) == (
        "no verified package in the store to look for",
        True,
    )
