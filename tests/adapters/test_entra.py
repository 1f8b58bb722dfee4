"""Approver groups through Microsoft Graph's checkMemberGroups, against a fake Entra login and
a fake Graph on loopback: the client-credentials token, the cache, and failing closed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from adapters.entra import GraphGroups, GroupLookupFailed

if TYPE_CHECKING:  # a runtime import would come before pytest's assertion rewriting
    from tests.fake_graph import FakeGraph

pytest_plugins = ["tests.fake_graph"]

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "graph-test-secret"
TENANT = "00000000-0000-0000-0000-000000000001"

USER = "00000000-0000-0000-0000-0000000000aa"
GROUP_A = "aaaaaaaa-0000-0000-0000-00000000000a"
GROUP_B = "bbbbbbbb-0000-0000-0000-00000000000b"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def graph_groups(graph: FakeGraph, clock: Clock, **kwargs: object) -> GraphGroups:
    return GraphGroups(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        default_tenant=TENANT,
        login_url=graph.url,
        graph_url=graph.url,
        cache_s=300,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def groups(fake_graph: FakeGraph) -> GraphGroups:
    fake_graph.members = {GROUP_A: {USER}}
    return graph_groups(fake_graph, Clock())


async def test_membership_comes_from_check_member_groups_with_an_app_token(
    fake_graph: FakeGraph,
) -> None:
    fake_graph.members = {GROUP_A: {USER}}
    lookup = graph_groups(fake_graph, Clock())
    try:
        assert await lookup.member_of(USER, [GROUP_A, GROUP_B], None) == {GROUP_A}
        assert await lookup.member_of(USER.upper(), [GROUP_B], None) == frozenset()
    finally:
        await lookup.close()
    assert fake_graph.token_requests == 1  # one token for both calls
    assert [(u, sorted(g)) for u, g, _ in fake_graph.graph_requests] == [
        (USER, [GROUP_A, GROUP_B]),
        (USER, [GROUP_B]),
    ]


async def test_answers_are_cached_until_the_ttl_ends(fake_graph: FakeGraph) -> None:
    fake_graph.members = {GROUP_A: {USER}}
    clock = Clock()
    lookup = graph_groups(fake_graph, clock)
    try:
        await lookup.member_of(USER, [GROUP_A], None)
        fake_graph.members = {}  # removed from the group in Entra
        clock.now += 299
        assert await lookup.member_of(USER, [GROUP_A], None) == {GROUP_A}  # cached
        clock.now += 2
        assert await lookup.member_of(USER, [GROUP_A], None) == frozenset()  # asked again
    finally:
        await lookup.close()
    assert len(fake_graph.graph_requests) == 2


async def test_a_revoked_token_is_replaced_once(fake_graph: FakeGraph) -> None:
    fake_graph.members = {GROUP_A: {USER}}
    lookup = graph_groups(fake_graph, Clock())
    try:
        await lookup.member_of(USER, [GROUP_B], None)
        fake_graph.revoke_tokens()
        assert await lookup.member_of(USER, [GROUP_A], None) == {GROUP_A}
    finally:
        await lookup.close()
    assert fake_graph.token_requests == 2


@pytest.mark.parametrize("status", [403, 429, 500, 503])
async def test_graph_refusing_or_failing_is_a_lookup_failure_never_cached(
    fake_graph: FakeGraph, status: int
) -> None:
    fake_graph.members = {GROUP_A: {USER}}
    lookup = graph_groups(fake_graph, Clock())
    fake_graph.fail_next(status)
    try:
        with pytest.raises(GroupLookupFailed, match=f"HTTP {status}"):
            await lookup.member_of(USER, [GROUP_A], None)
        assert await lookup.member_of(USER, [GROUP_A], None) == {GROUP_A}
    finally:
        await lookup.close()


async def test_a_wrong_client_secret_fails_without_showing_it(fake_graph: FakeGraph) -> None:
    lookup = GraphGroups(
        client_id=CLIENT_ID,
        client_secret="not-the-secret",
        default_tenant=TENANT,
        login_url=fake_graph.url,
        graph_url=fake_graph.url,
    )
    try:
        with pytest.raises(GroupLookupFailed) as caught:
            await lookup.member_of(USER, [GROUP_A], None)
    finally:
        await lookup.close()
    assert "HTTP 401" in str(caught.value) and "not-the-secret" not in str(caught.value)
    assert fake_graph.graph_requests == []


async def test_an_unreachable_graph_is_a_lookup_failure() -> None:
    lookup = GraphGroups(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        default_tenant=TENANT,
        login_url="http://127.0.0.1:9",
        graph_url="http://127.0.0.1:9",
        timeout_s=2,
    )
    try:
        with pytest.raises(GroupLookupFailed, match="cannot reach"):
            await lookup.member_of(USER, [GROUP_A], None)
    finally:
        await lookup.close()


async def test_an_unknown_user_is_in_no_group(fake_graph: FakeGraph) -> None:
    lookup = graph_groups(fake_graph, Clock())
    try:
        assert (
            await lookup.member_of("ffffffff-0000-0000-0000-000000000000", [GROUP_A], None)
            == frozenset()
        )
        # Not an object id at all: never put into a URL.
        assert await lookup.member_of("../../users", [GROUP_A], None) == frozenset()
    finally:
        await lookup.close()
    assert [u for u, _, _ in fake_graph.graph_requests] == ["ffffffff-0000-0000-0000-000000000000"]
