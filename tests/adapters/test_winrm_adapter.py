"""adapters.winrm.transport against the lab over real loopback WinRM: deadline, errors."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable

import pytest

from adapters.errors import (
    AuthenticationFailed,
    BadReply,
    DeadlineExceeded,
    HostUnreachable,
    InvalidName,
    RemoteScriptFailed,
)
from adapters.winrm.scripts import JsonValue, ScriptOutput, parse_result
from adapters.winrm.transport import WinRMShell
from lab.core import Lab
from lab.demo import DEMO_PASSWORD

pytest_plugins = ["tests.lab_fixtures"]
ShellFactory = Callable[..., WinRMShell]  # the lab_shell fixture

HOSTILE = (
    'it\'s "quoted" $(Stop-Computer) `n ‘single’ “double” \r\nline2\n🙂 ; & | <x/> ${env:PATH} @a'
)
READ = {
    "Sites": ["MCMS.Portal"],
    "AppPools": ["MCMS.Portal"],
    "Services": ["MCMS.Worker"],
    "ReleasesRoot": "D:\\MCMS\\releases",
}
STOP = {"Site": "MCMS.Portal", "Action": "Stop", "TimeoutSec": 3}


async def wait_until(check: object, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_hostile_text_arrives_byte_exact_and_comes_back_equal(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    reply = await lab_shell(lab_host).run("echo", {"Text": HOSTILE}, timeout_s=5)

    call = lab.calls(lab_host)[-1]
    assert call.op == "echo"
    assert call.params == {"Text": HOSTILE}
    assert json.loads(call.raw_json)["Text"].encode("utf-8") == HOSTILE.encode("utf-8")
    assert reply["text"] == HOSTILE
    assert reply["length"] == len(HOSTILE.encode("utf-16-le")) // 2  # .NET counts UTF-16


async def test_long_script_travels_on_stdin_not_the_command_line(
    lab_host: str, lab_shell: ShellFactory
) -> None:
    """The lab refuses command lines over 8,191 chars, as Windows does; stdin has no limit."""
    text = "x" * 50_000
    reply = await lab_shell(lab_host).run("echo", {"Text": text}, timeout_s=5)
    assert reply["text"] == text


async def test_every_run_closes_its_command_and_shell(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    await lab_shell(lab_host).run("read-state", READ, timeout_s=5)

    assert lab.winrm_actions(lab_host) == [
        "Create", "Command", "Send", "Receive", "Signal", "Delete"
    ]  # fmt: skip
    assert lab.shells_open(lab_host) == 0


@pytest.mark.parametrize(
    ("op", "key", "value"),
    [
        ("site-control", "Site", "MCMS; Stop-Computer"),
        ("site-control", "Site", "$(Stop-Computer)"),
        ("site-control", "Site", "‘MCMS’"),
        ("site-control", "Site", "MCMS’"),
        ("site-control", "Site", "MCMS`"),
        ("site-control", "Site", "MCMS\n"),
        ("site-control", "Site", ""),
        ("site-control", "Site", " MCMS"),
        ("site-control", "Site", "M" * 65),
        ("site-control", "Site", "Mcms\u00e9"),
        ("site-control", "Site", 42),
        ("site-control", "Action", "Stop; iisreset"),
        ("read-state", "AppPools", ["pool'; iisreset"]),
        ("read-state", "Services", ["svc|calc"]),
        ("read-state", "Sites", "MCMS"),
        ("read-state", "Sites", ["MCMS"] * 51),
        ("read-state", "ReleasesRoot", "D:\\MCMS\\..\\Windows"),
        ("read-state", "ReleasesRoot", "\\\\share\\releases"),
        ("read-state", "Unknown", "MCMS"),
    ],
    ids=lambda v: repr(v)[:24],
)
async def test_unsafe_names_are_refused_before_any_winrm_request(
    lab: Lab, lab_host: str, lab_shell: ShellFactory, op: str, key: str, value: object
) -> None:
    params = {**(READ if op == "read-state" else STOP), key: value}
    with pytest.raises(InvalidName) as caught:
        await lab_shell(lab_host).run(op, params, timeout_s=5)  # type: ignore[arg-type]

    assert lab_host in str(caught.value)
    assert lab.winrm_requests(lab_host) == 0


async def test_unknown_operation_is_refused_before_any_winrm_request(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    with pytest.raises(InvalidName, match="unknown remote operation"):
        await lab_shell(lab_host).run("Invoke-Expression", {}, timeout_s=5)
    assert lab.winrm_requests(lab_host) == 0


async def test_hanging_host_fails_at_the_deadline_and_the_shell_is_deleted(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    lab.set_fault(lab_host, "winrm", "hang")
    started = time.monotonic()

    with pytest.raises(DeadlineExceeded) as caught:
        await lab_shell(lab_host).run("echo", {"Text": "hi"}, timeout_s=2)

    assert 1.9 <= time.monotonic() - started <= 3.0
    assert lab_host in str(caught.value)
    assert await wait_until(lambda: lab.shells_open(lab_host) == 0)
    assert lab.winrm_actions(lab_host)[-2:] == ["Signal", "Delete"]


async def test_caller_gets_control_back_at_the_deadline_even_if_one_http_call_hangs(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    """The lab never answers Receive; the worker thread is stuck in one HTTP read."""
    lab.set_fault(lab_host, "winrm", "stall")
    started = time.monotonic()

    with pytest.raises(DeadlineExceeded):
        await lab_shell(lab_host).run("echo", {"Text": "hi"}, timeout_s=1.5)

    assert 1.4 <= time.monotonic() - started <= 2.5
    # The worker gives up its read soon after and still deletes the shell.
    assert await wait_until(lambda: lab.shells_open(lab_host) == 0, timeout_s=4)


async def test_cancelled_caller_stops_the_worker_and_the_shell_is_deleted(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    """The worker notices within one operation timeout (1 s here), then cleans up."""
    lab.set_fault(lab_host, "winrm", "hang")
    shell = lab_shell(lab_host, operation_timeout_s=1)
    task = asyncio.ensure_future(shell.run("echo", {"Text": "hi"}, timeout_s=30))
    assert await wait_until(lambda: lab.shells_open(lab_host) == 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_until(lambda: lab.shells_open(lab_host) == 0)


async def test_wrong_credentials_fail_with_a_clear_message_without_the_password(
    lab_host: str, lab_shell: ShellFactory
) -> None:
    wrong = "Sup3r-Secret-Wrong"
    with pytest.raises(AuthenticationFailed) as caught:
        await lab_shell(lab_host, password=wrong).run("echo", {"Text": "hi"}, timeout_s=5)

    message = str(caught.value)
    assert lab_host in message and "lab-admin" in message and "401" in message
    assert wrong not in message and DEMO_PASSWORD not in message


async def test_host_refusing_credentials_fails_with_authentication_failed(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    lab.set_fault(lab_host, "winrm", "auth")
    with pytest.raises(AuthenticationFailed):
        await lab_shell(lab_host).run("echo", {"Text": "hi"}, timeout_s=5)


async def test_garbage_reply_fails_with_bad_reply(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    lab.set_fault(lab_host, "winrm", "garbage")
    with pytest.raises(BadReply, match=lab_host):
        await lab_shell(lab_host).run("echo", {"Text": "hi"}, timeout_s=5)


async def test_closed_port_fails_with_host_unreachable(
    lab: Lab, lab_host: str, lab_shell: ShellFactory
) -> None:
    lab.set_fault(lab_host, "winrm", "down")
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=lab_host):
        await lab_shell(lab_host).run("echo", {"Text": "hi"}, timeout_s=5)
    assert time.monotonic() - started < 2


async def test_unused_port_fails_with_host_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shell = WinRMShell(f"http://127.0.0.1:{port}/wsman", "basic", "u", "p", host="ghost01")
    with pytest.raises(HostUnreachable, match="ghost01"):
        await shell.run("echo", {"Text": "hi"}, timeout_s=5)


async def test_script_failure_carries_the_scripts_own_message(
    lab_host: str, lab_shell: ShellFactory
) -> None:
    params: dict[str, JsonValue] = {"Site": "NoSuchSite", "Action": "Start", "TimeoutSec": 5}
    with pytest.raises(RemoteScriptFailed) as caught:
        await lab_shell(lab_host).run("site-control", params, timeout_s=5)

    assert "NoSuchSite' does not exist" in caught.value.remote_message
    assert caught.value.exit_code == 1
    assert lab_host in str(caught.value)


CLIXML = (
    b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
    b'<S S="Error">Import-Module : The specified module &apos;WebAdministration&apos; was not '
    b"loaded_x000D__x000A_</S></Objs>"
)


@pytest.mark.parametrize(
    ("stdout", "stderr", "exit_code", "expected"),
    [
        (b'\xef\xbb\xbfWARNING: noise\r\n{"ok":true,"state":"Started"}\r\n', b"", 0, "ok"),
        (b'{"ok":true}\r\n{"ok":true,"last":1}\r\n', b"", 0, "ok"),
        (b"just text\r\n", b"", 0, BadReply),
        (b'{"ok":false,"error":"IIS site \'X\' does not exist"}\r\n', b"", 1, "does not exist"),
        (b"", CLIXML, 1, "module 'WebAdministration' was not loaded"),
        (b"", b"", 3, "exit code 3"),
    ],
    ids=["bom-and-noise", "last-line-wins", "no-json", "script-error", "clixml", "silent-exit"],
)
def test_script_output_becomes_a_result_or_a_clear_error(
    stdout: bytes, stderr: bytes, exit_code: int, expected: object
) -> None:
    output = ScriptOutput(stdout, stderr, exit_code)
    if expected == "ok":
        assert parse_result("web01", "op", output)["ok"] is True
    elif expected is BadReply:
        with pytest.raises(BadReply, match="web01"):
            parse_result("web01", "op", output)
    else:
        with pytest.raises(RemoteScriptFailed) as caught:
            parse_result("web01", "op", output)
        assert str(expected) in caught.value.remote_message
        assert "web01" in str(caught.value)
