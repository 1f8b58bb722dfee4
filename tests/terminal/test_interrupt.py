"""Ctrl-C during a CLI run asks whether to cancel; it never leaves the run without its
process. A real CLI process, held by the lab at its deploy step, gets SIGINT (or SIGTERM);
what the hosts are left in is read from the lab.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
import threading
from pathlib import Path

import pytest

from lab.core import Lab
from tests.lab_fixtures import write_lab_config
from tests.terminal.cli_process import REASON, ROOT, cli_argv, cli_env, start_cli
from tests.terminal.cli_process import cli as cli_run
from tests.terminal.test_shared_lock import db_rows, mutating_calls, releases, until_held

pytest_plugins = ["tests.lab_fixtures"]
pytestmark = pytest.mark.slow


def result(log: Path) -> dict[str, object]:
    lines = [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]
    found = [e for e in lines if e.get("event") == "result"]
    assert found, log.read_text()
    return found[-1]


async def held_cli(lab: Lab, tmp_path: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    lab.hold(lab.host_for("Lab"), "deploy-release")
    log = tmp_path / "cli.out"
    process = start_cli(config, "rollback", "Lab", "--reason", REASON, "--json", log=log)
    await until_held(lab, config.parent / "var" / "mcms-bot.db", "the CLI's run")
    return process, config, log


async def finish(process: subprocess.Popen[str]) -> int:
    try:
        return await asyncio.to_thread(process.wait, 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdin is not None
        process.stdin.close()


async def until_asked(log: Path) -> None:
    for _ in range(300):
        if "Cancel the run?" in log.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("Ctrl-C did not ask:\n" + log.read_text())


async def test_ctrl_c_answered_yes_cancels_and_the_hosts_are_restored(
    lab: Lab, tmp_path: Path
) -> None:
    process, config, log = await held_cli(lab, tmp_path)
    process.send_signal(signal.SIGINT)
    await until_asked(log)
    assert process.stdin is not None
    process.stdin.write("y\n")
    process.stdin.flush()
    for _ in range(300):  # the cancel is recorded before the held step goes on
        (run,) = db_rows(config.parent / "var" / "mcms-bot.db", "SELECT * FROM runs")
        if run["cancel_requested_by"]:
            break
        await asyncio.sleep(0.05)
    assert run["cancel_requested_by"] == "Alex Wilber"
    assert process.poll() is None  # still there: it waits for the run's end
    lab.release(lab.host_for("Lab"))

    assert await finish(process) == 1, log.read_text()
    assert result(log)["state"] == "cancelled" and result(log)["restore"] == "restored"
    # The lab runs what it ran before, every component started.
    state = lab.state(lab.host_for("Lab"))
    assert releases(lab) == {"1.4.2"}
    assert {s["state"] for s in state["sites"].values()} == {"Started"}
    assert state["services"]["MCMS.Worker"]["state"] == "Running"
    db = config.parent / "var" / "mcms-bot.db"
    assert db_rows(db, "SELECT * FROM env_locks") == []


async def test_ctrl_c_answered_no_lets_the_run_finish(lab: Lab, tmp_path: Path) -> None:
    process, _config, log = await held_cli(lab, tmp_path)
    process.send_signal(signal.SIGINT)
    await until_asked(log)
    assert process.stdin is not None
    process.stdin.write("n\n")
    process.stdin.flush()
    for _ in range(300):
        if "Not cancelled" in log.read_text():
            break
        await asyncio.sleep(0.05)
    lab.release(lab.host_for("Lab"))

    assert await finish(process) == 0, log.read_text()
    assert result(log)["state"] == "succeeded"
    assert releases(lab) == {"1.4.1"}


async def test_sigterm_cancels_without_asking_and_waits_for_the_restore(
    lab: Lab, tmp_path: Path
) -> None:
    process, _config, log = await held_cli(lab, tmp_path)
    process.send_signal(signal.SIGTERM)
    for _ in range(300):
        if "Cancel requested" in log.read_text():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(log.read_text())
    lab.release(lab.host_for("Lab"))

    assert await finish(process) == 1, log.read_text()
    assert result(log)["restore"] == "restored"
    assert releases(lab) == {"1.4.2"}


async def test_a_cli_killed_mid_run_leaves_its_run_to_the_next_start_never_locked_forever(
    lab: Lab, tmp_path: Path
) -> None:
    process, config, _log = await held_cli(lab, tmp_path)
    db = config.parent / "var" / "mcms-bot.db"
    (dead,) = db_rows(db, "SELECT * FROM runs")
    process.kill()  # SIGKILL: nothing of the CLI runs any more
    await finish(process)
    lab.release(lab.host_for("Lab"))
    assert len(db_rows(db, "SELECT * FROM env_locks")) == 1  # held by a dead owner

    again = await asyncio.to_thread(
        cli_run, config, "rollback", "Lab", "--reason", REASON, "--json"
    )
    assert again.code == 0, again.out + again.err
    assert f"{dead['id']} (Lab) was left running by a process that died" in again.out
    (settled,) = db_rows(db, "SELECT state FROM runs WHERE id = ?", dead["id"])
    assert settled["state"] == "interrupted"
    assert db_rows(db, "SELECT * FROM env_locks") == []
    state = lab.state(lab.host_for("Lab"))
    assert releases(lab) == {"1.4.1"}
    assert {s["state"] for s in state["sites"].values()} == {"Started"}


async def until_in(log: Path, words: str) -> None:
    for _ in range(400):
        if words in log.read_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never said {words!r}:\n" + log.read_text())


async def test_ctrl_c_before_the_run_exists_starts_nothing_and_exits_cleanly(
    lab: Lab, tmp_path: Path
) -> None:
    """SIGINT while the plan reads the hosts: no traceback, exit 130, the request it made
    withdrawn (never left pending), no run, nothing changed on the host."""
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    host = lab.host_for("Lab")
    lab.hold(host, "read-state")
    log = tmp_path / "cli.out"
    process = start_cli(config, "rollback", "Lab", "--reason", REASON, "--json", log=log)
    for _ in range(600):
        if lab.held(host):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the CLI never read the host:\n" + log.read_text())
    process.send_signal(signal.SIGINT)
    await until_in(log, "stopping before the run starts")
    lab.release(host)

    assert await finish(process) == 130, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert result(log)["interrupted"] is True
    db = config.parent / "var" / "mcms-bot.db"
    requests = db_rows(db, "SELECT * FROM requests")
    assert [r["state"] for r in requests] == ["rejected"]
    assert requests[0]["id"] == result(log)["request_id"]
    assert db_rows(db, "SELECT * FROM runs") == [] and db_rows(db, "SELECT * FROM env_locks") == []
    assert mutating_calls(lab) == 0 and releases(lab) == {"1.4.2"}


class Screen:
    """What a process writes to its terminal (the master side of a pty), read on a thread
    so the process never blocks on a full pty buffer."""

    def __init__(self, master: int) -> None:
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: the process and its terminal are gone
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")

    def type(self, line: str) -> None:
        os.write(self._master, line.encode() + b"\r")

    async def until(self, words: str, timeout: float = 60) -> None:
        for _ in range(int(timeout / 0.05)):
            if words in self.text:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the terminal never showed {words!r}:\n{self.text[-3000:]}")


def on_a_pty(config: Path, *args: str) -> tuple[subprocess.Popen[bytes], Screen, int]:
    """The CLI with a terminal of 160 columns as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    process = subprocess.Popen(
        cli_argv(config, *args),
        cwd=ROOT,
        env=cli_env(TERM="xterm-256color"),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    return process, Screen(master), master


async def test_ctrl_c_at_the_break_glass_question_withdraws_and_starts_nothing(
    lab: Lab, tmp_path: Path
) -> None:
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    db = config.parent / "var" / "mcms-bot.db"
    process, screen, master = on_a_pty(config, "rollback", "Lab", "--reason", REASON)
    try:
        await screen.until("Break glass: approve")
        process.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert code == 130, screen.text[-3000:]
    assert "Interrupted before the run started: nothing ran" in screen.text
    assert "Traceback" not in screen.text
    assert [r["state"] for r in db_rows(db, "SELECT * FROM requests")] == ["rejected"]
    assert db_rows(db, "SELECT * FROM runs") == [] and mutating_calls(lab) == 0


async def test_on_a_terminal_ctrl_c_asks_over_the_live_display_and_yes_restores(
    lab: Lab, tmp_path: Path
) -> None:
    """The operator's own case: a real terminal (a pty), so the live display runs and the
    break-glass question is asked; Ctrl-C pauses the display and asks; `y` cancels and the
    hosts are put back."""
    config = write_lab_config(lab, tmp_path / "bot", port=0)
    db = config.parent / "var" / "mcms-bot.db"
    host = lab.host_for("Lab")
    lab.hold(host, "deploy-release")
    process, screen, master = on_a_pty(config, "rollback", "Lab", "--reason", REASON)
    try:
        await screen.until("Break glass: approve")
        assert "Rollback Lab to 1.4.1?" in screen.text  # the plan, drawn before the question
        screen.type("y")
        await until_held(lab, db, "the CLI's run")
        process.send_signal(signal.SIGINT)
        await screen.until("Cancel the run?")
        screen.type("y")
        for _ in range(300):
            (run,) = db_rows(db, "SELECT * FROM runs")
            if run["cancel_requested_by"]:
                break
            await asyncio.sleep(0.05)
        assert run["cancel_requested_by"] == "Alex Wilber", screen.text[-3000:]
        lab.release(host)
        code = await asyncio.to_thread(process.wait, 120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        lab.release(host)
        os.close(master)
    assert code == 1, screen.text[-3000:]
    assert "Traceback" not in screen.text
    (run,) = db_rows(db, "SELECT * FROM runs")
    assert (run["state"], run["restore"]) == ("cancelled", "restored")
    assert releases(lab) == {"1.4.2"}
    assert db_rows(db, "SELECT * FROM env_locks") == []
