"""The OpsGenie and webhook sinks against a fake on loopback: the wire, retries, refusals."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from adapters.alert_sinks import AlertNotice, SinkPolicy, post_json
from adapters.opsgenie import OpsGenieSink
from adapters.queue_depth import read_queue_depth
from adapters.webhook import WebhookSink

if TYPE_CHECKING:
    from tests.fake_opsgenie import FakeOpsGenie

pytest_plugins = ["tests.fake_opsgenie"]

NOTICE = AlertNotice(
    environment="InternalProd",
    alias="mcms-InternalProd-A-0000abcd",
    message="MCMS InternalProd: smoke failing (Health -1 (connection refused), 3 ms)" * 3,
    description="Alert A-0000abcd raised by mcms-bot",
    details={"Health": "Health -1 (connection refused), 3 ms"},
)
FAST = SinkPolicy(attempts=3, timeout_s=0.5, backoff_s=0.01)


def sink(url: str, key: str | None = "genie-key") -> OpsGenieSink:
    return OpsGenieSink(
        url, key, key_env="MCMS_OPSGENIE_API_KEY", priority="P1", tags=["mcms"], policy=FAST
    )


async def test_create_and_close_speak_alerts_api_v2(fake_opsgenie: FakeOpsGenie) -> None:
    created = await sink(fake_opsgenie.url + "/").raised(NOTICE)
    closed = await sink(fake_opsgenie.url).resolved(NOTICE)
    assert (created.ok, created.attempts, created.status) == (True, 1, 202)
    assert closed.ok
    create, close = fake_opsgenie.calls
    assert (create.method, create.path) == ("POST", "/v2/alerts")
    assert create.authorization == "GenieKey genie-key"
    assert create.body["alias"] == NOTICE.alias
    assert len(create.body["message"]) == 130  # OpsGenie's limit
    assert create.body["priority"] == "P1" and create.body["tags"] == ["mcms", "InternalProd"]
    assert create.body["details"] == dict(NOTICE.details)
    assert close.path == "/v2/alerts/mcms-InternalProd-A-0000abcd/close"
    assert close.query == {"identifierType": "alias"}
    assert close.authorization == "GenieKey genie-key"


async def test_5xx_is_retried_and_given_up_as_a_value(fake_opsgenie: FakeOpsGenie) -> None:
    fake_opsgenie.mode = "error"
    result = await sink(fake_opsgenie.url).raised(NOTICE)
    assert (result.ok, result.attempts, result.status) == (False, 3, 500)
    assert result.reason == "gave up after 3 attempts: HTTP 500"
    assert len(fake_opsgenie.calls) == 3


async def test_a_wrong_key_is_not_retried(fake_opsgenie: FakeOpsGenie) -> None:
    fake_opsgenie.mode = "unauthorized"
    result = await sink(fake_opsgenie.url).raised(NOTICE)
    assert (result.ok, result.attempts, result.reason) == (False, 1, "refused: HTTP 401")


async def test_a_hanging_server_times_out_each_attempt(fake_opsgenie: FakeOpsGenie) -> None:
    fake_opsgenie.mode, fake_opsgenie.hang_s = "hang", 0.6
    policy = SinkPolicy(attempts=2, timeout_s=0.2, backoff_s=0.01)
    result = await OpsGenieSink(
        fake_opsgenie.url, "k", key_env="K", priority="P3", tags=[], policy=policy
    ).raised(NOTICE)
    assert (result.ok, result.attempts) == (False, 2)
    assert result.reason == "gave up after 2 attempts: no answer within 0.2 s"


async def test_no_key_sends_nothing_and_says_which_variable(fake_opsgenie: FakeOpsGenie) -> None:
    result = await sink(fake_opsgenie.url, key=None).raised(NOTICE)
    assert not result.ok and result.reason == "no API key: MCMS_OPSGENIE_API_KEY is not set"
    assert fake_opsgenie.calls == []


async def test_429_waits_its_retry_after_then_delivers() -> None:
    answers = iter([httpx.Response(429, headers={"Retry-After": "0.3"}), httpx.Response(202)])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    transport = httpx.MockTransport(lambda request: next(answers))
    result = await post_json(
        "http://sink.invalid/x", {}, {}, FAST, sleep=sleep, transport=transport
    )
    assert (result.ok, result.attempts) == (True, 2) and waits == [0.3]


async def test_webhook_gets_the_same_events_with_a_bearer_token(
    fake_opsgenie: FakeOpsGenie,
) -> None:
    hook = WebhookSink(fake_opsgenie.url + "/hooks/mcms", "hook-token", FAST)
    assert (await hook.raised(NOTICE)).ok and (await hook.resolved(NOTICE)).ok
    raised, resolved = fake_opsgenie.calls
    assert raised.path == "/hooks/mcms" and raised.authorization == "Bearer hook-token"
    assert raised.body["event"] == "raised" and resolved.body["event"] == "resolved"
    assert raised.body["alias"] == NOTICE.alias and raised.body["environment"] == "InternalProd"


@pytest.mark.parametrize(
    ("answer", "value", "error"),
    [
        (httpx.Response(200, json={"worker": {"queue": 12}}), 12.0, None),
        (
            httpx.Response(200, json={"worker": {"queue": "12"}}),
            None,
            "no number at 'worker.queue'",
        ),
        (
            httpx.Response(200, json={"worker": {"queue": True}}),
            None,
            "no number at 'worker.queue'",
        ),
        (httpx.Response(200, text="<html>"), None, "the answer is not JSON"),
        (httpx.Response(503), None, "HTTP 503"),
    ],
    ids=["number", "string", "bool", "not-json", "503"],
)
async def test_queue_depth_is_a_number_or_a_reason(
    answer: httpx.Response, value: float | None, error: str | None
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    depth = await read_queue_depth("http://w.invalid/s", "worker.queue", 1, transport=transport)
    assert (depth.value, depth.error) == (value, error)
