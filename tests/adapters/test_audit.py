"""The JSONL audit: what a line holds, the chain across days, and verify naming each tamper."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.audit import AuditActor, AuditLog, format_report, main_verify, prune, verify
from adapters.audit.chain import ZERO_HASH, record_hash
from adapters.clock import ManualClock

KST = ZoneInfo("Asia/Seoul")
# 2026-11-27 08:50 KST; KST midnight is 15:00 UTC.
START = datetime(2026, 11, 26, 23, 50, tzinfo=UTC)
DAY1 = "2026-11-27.jsonl"


KEY = b"audit-test-key-0123456789abcdef0123456789"


def make_log(directory: Path, clock: ManualClock | None = None) -> AuditLog:
    """A keyed writer: the tamper tests below are an insider with the key (or without)."""
    return AuditLog(directory, KST, clock=clock or ManualClock(START), key=KEY)


def write_lines(directory: Path, n: int, clock: ManualClock | None = None) -> AuditLog:
    log = make_log(directory, clock)
    for i in range(n):
        log.append_sync("StepSucceeded", environment="Lab", run_id="r1", step=f"s{i}")
    return log


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def write_back(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def kinds(directory: Path) -> list[tuple[str, int, str]]:
    return [(p.file, p.line, p.kind) for p in verify(directory, [KEY]).problems]


def test_line_holds_every_field_with_utc_offset_timestamp(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    record = log.append_sync(
        "Approved",
        environment="InternalProd",
        request_id="q1",
        run_id="r1",
        actor=AuditActor("김운영", "0000-aaaa"),
        step="approve",
        status="ok",
        duration_ms=12,
        detail={"plan_hash": "ab", "when": START},
    )
    line = json.loads((tmp_path / DAY1).read_text(encoding="utf-8"))
    assert line["ts"] == "2026-11-26T23:50:00.000000+00:00"
    assert line["actor"] == {"name": "김운영", "aad_object_id": "0000-aaaa"}
    assert line["detail"] == {"plan_hash": "ab", "when": "2026-11-26T23:50:00+00:00"}
    assert (line["seq"], line["prev"]) == (1, ZERO_HASH)
    assert line["hash"] == record_hash(line, KEY) == record.hash
    assert set(line) == {
        "ts", "seq", "event", "environment", "request_id", "run_id", "actor",
        "step", "status", "duration_ms", "detail", "prev", "hash",
        "kid",
    }  # fmt: skip
    assert record.file == DAY1 and record.ts == START


def test_actor_may_be_a_mapping_as_commands_pass_it(tmp_path: Path) -> None:
    make_log(tmp_path).append_sync("Smoke", actor={"name": "Kim", "aad_object_id": None})
    line = json.loads((tmp_path / DAY1).read_text(encoding="utf-8"))
    assert line["actor"] == {"name": "Kim", "aad_object_id": None}


def test_day_file_is_named_by_the_configured_zone_not_utc(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 27, 14, 59, 59, tzinfo=UTC))
    log = make_log(tmp_path, clock)
    log.append_sync("Started")
    clock.advance(timedelta(seconds=2))  # 00:00:01 KST on the 28th
    log.append_sync("Deployed")
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == [
        "2026-11-27.jsonl",
        "2026-11-28.jsonl",
    ]


def test_chain_continues_from_the_last_line_of_the_previous_day(tmp_path: Path) -> None:
    clock = ManualClock(START)
    write_lines(tmp_path, 3, clock)
    clock.advance(timedelta(days=1))
    write_lines(tmp_path, 2, clock)
    last_of_day1 = json.loads(read_lines(tmp_path / DAY1)[-1])
    first_of_day2 = json.loads(read_lines(tmp_path / "2026-11-28.jsonl")[0])
    assert first_of_day2["prev"] == last_of_day1["hash"]
    assert first_of_day2["seq"] == 4
    report = verify(tmp_path, [KEY])
    assert report.ok, format_report(report)
    assert (report.lines, report.files) == (5, 2)


def test_clock_stepping_back_keeps_writing_the_newest_file(tmp_path: Path) -> None:
    clock = ManualClock(START + timedelta(days=1))
    write_lines(tmp_path, 1, clock)
    clock.set(START)
    write_lines(tmp_path, 1, clock)
    assert [p.name for p in tmp_path.glob("*.jsonl")] == ["2026-11-28.jsonl"]
    assert verify(tmp_path, [KEY]).ok


def test_redact_scrubs_secrets_everywhere_before_hashing(tmp_path: Path) -> None:
    secret = 'pa"ss\\wörd'
    log = AuditLog(
        tmp_path,
        KST,
        redact=lambda s: s.replace(secret, "***"),
        clock=ManualClock(START),
        key=KEY,
    )
    log.append_sync(
        "StepFailed",
        status=f"login as x:{secret} failed",
        detail={"error": [f"token {secret}"], secret: 1},
    )
    raw = (tmp_path / DAY1).read_bytes()
    assert secret.encode() not in raw
    assert json.dumps(secret)[1:-1].encode() not in raw  # nor its JSON-escaped form
    assert b"login as x:*** failed" in raw
    assert verify(tmp_path, [KEY]).ok


def test_non_json_values_and_naive_clocks_are_refused(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    with pytest.raises(TypeError, match="JSON data"):
        log.append_sync("Started", detail={"obj": object()})
    naive = AuditLog(tmp_path, KST, clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        naive.append_sync("Started")
    assert not list(tmp_path.glob("*.jsonl"))


async def test_async_append_does_its_file_io_off_the_event_loop_thread(tmp_path: Path) -> None:
    threads: list[int] = []

    def clock() -> datetime:
        threads.append(threading.get_ident())
        return START

    await AuditLog(tmp_path, KST, clock=clock).append("Started")
    assert threads and threads[0] != threading.get_ident()


# --- verify names each kind of damage, at the right line -------------------------------------


def test_clean_log_passes_verify(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    assert kinds(tmp_path) == []
    assert main_verify(tmp_path, [KEY]) == 0


def test_edited_line_is_named(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    lines[2] = lines[2].replace('"step":"s2"', '"step":"s9"')
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, 3, "edited")]


@pytest.mark.parametrize("index", [2, 4], ids=["middle", "last"])
def test_edited_seq_field_is_named_edited_not_moved(tmp_path: Path, index: int) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    lines[index] = lines[index].replace(f'"seq":{index + 1},', '"seq":42,')
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, index + 1, "edited")]


def test_edited_and_rehashed_line_is_named(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    record = json.loads(lines[2])
    record["status"] = "ok"
    record["hash"] = record_hash(record, KEY)
    lines[2] = json.dumps(record) + "\n"
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, 3, "edited")]


def test_deleted_line_is_named_where_it_is_missing(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    del lines[2]
    write_back(tmp_path / DAY1, lines)
    report = verify(tmp_path, [KEY])
    assert [(p.file, p.line, p.kind) for p in report.problems] == [(DAY1, 3, "deleted")]
    assert "seq 3" in report.problems[0].message


def test_deleted_first_line_is_named(tmp_path: Path) -> None:
    write_lines(tmp_path, 3)
    write_back(tmp_path / DAY1, read_lines(tmp_path / DAY1)[1:])
    assert kinds(tmp_path) == [(DAY1, 1, "deleted")]


def test_deleted_day_file_is_named_at_the_next_file(tmp_path: Path) -> None:
    clock = ManualClock(START)
    for _ in range(3):
        write_lines(tmp_path, 2, clock)
        clock.advance(timedelta(days=1))
    (tmp_path / "2026-11-28.jsonl").unlink()
    assert kinds(tmp_path) == [("2026-11-29.jsonl", 1, "deleted")]


def test_forged_line_with_a_valid_hash_is_named_inserted(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    before = json.loads(lines[1])
    forged = dict(before, seq=3, prev=before["hash"], event="Approved")
    forged["hash"] = record_hash(forged, KEY)
    lines.insert(2, json.dumps(forged) + "\n")
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, 3, "inserted")]


def test_copied_line_is_named_inserted(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    lines.insert(4, lines[1])
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, 5, "inserted")]


def test_line_appended_behind_the_writers_back_is_named_inserted(tmp_path: Path) -> None:
    write_lines(tmp_path, 3)
    last = json.loads(read_lines(tmp_path / DAY1)[-1])
    extra = dict(last, seq=4, prev=last["hash"])
    extra["hash"] = record_hash(extra, KEY)
    with (tmp_path / DAY1).open("a", encoding="utf-8") as f:
        f.write(json.dumps(extra) + "\n")
    assert kinds(tmp_path) == [(DAY1, 4, "inserted")]


def test_swapped_lines_are_named_reordered(tmp_path: Path) -> None:
    write_lines(tmp_path, 6)
    lines = read_lines(tmp_path / DAY1)
    lines[2], lines[3] = lines[3], lines[2]
    write_back(tmp_path / DAY1, lines)
    report = verify(tmp_path, [KEY])
    assert [(p.file, p.line, p.kind) for p in report.problems] == [(DAY1, 3, "reordered")]
    assert f"belongs after {DAY1}:4" in report.problems[0].message


def test_line_moved_to_the_front_names_only_that_line(tmp_path: Path) -> None:
    write_lines(tmp_path, 6)
    lines = read_lines(tmp_path / DAY1)
    write_back(tmp_path / DAY1, [lines[5], *lines[:5]])
    assert kinds(tmp_path) == [(DAY1, 1, "reordered")]


@pytest.mark.parametrize(
    "garbage",
    ["not json\n", "[1, 2]\n", '{"seq": 3}\n', "\n"],
    ids=["text", "array", "no-chain", "empty"],
)
def test_malformed_line_in_place_of_a_record_is_named_once(tmp_path: Path, garbage: str) -> None:
    write_lines(tmp_path, 5)
    lines = read_lines(tmp_path / DAY1)
    lines[2] = garbage
    write_back(tmp_path / DAY1, lines)
    assert kinds(tmp_path) == [(DAY1, 3, "malformed")]


def test_torn_write_is_named_and_the_next_line_still_chains(tmp_path: Path) -> None:
    log = write_lines(tmp_path, 3)
    with (tmp_path / DAY1).open("ab") as f:
        f.write(b'{"ts":"2026-11-2')  # a crash mid-write: no newline
    assert kinds(tmp_path) == [(DAY1, 4, "malformed")]
    log.append_sync("Started")
    assert kinds(tmp_path) == [(DAY1, 4, "malformed")]
    assert json.loads(read_lines(tmp_path / DAY1)[4])["seq"] == 4


def test_truncated_tail_is_named_against_head(tmp_path: Path) -> None:
    write_lines(tmp_path, 5)
    write_back(tmp_path / DAY1, read_lines(tmp_path / DAY1)[:3])
    report = verify(tmp_path, [KEY])
    assert [(p.file, p.line, p.kind) for p in report.problems] == [(DAY1, 4, "truncated")]
    assert "2 line(s) missing at the end" in report.problems[0].message


def test_truncation_stays_visible_after_the_writer_moves_on(tmp_path: Path) -> None:
    log = write_lines(tmp_path, 5)
    write_back(tmp_path / DAY1, read_lines(tmp_path / DAY1)[:3])
    log.append_sync("Started")
    lines = read_lines(tmp_path / DAY1)
    assert json.loads(lines[3])["event"] == "AuditTailMismatch"
    report = verify(tmp_path, [KEY])
    assert [(p.file, p.line, p.kind) for p in report.problems] == [(DAY1, 4, "truncated")]
    assert "seq 4..5 are gone" in report.problems[0].message


def test_writer_that_died_before_updating_head_resumes_without_a_marker(tmp_path: Path) -> None:
    log = write_lines(tmp_path, 2)
    head_after_two = (tmp_path / ".head").read_bytes()
    log.append_sync("Started")
    (tmp_path / ".head").write_bytes(head_after_two)  # as if killed between line and .head
    assert kinds(tmp_path) == [(DAY1, 3, "inserted")]  # unproven until the next line
    log.append_sync("Deployed")
    assert [json.loads(line)["event"] for line in read_lines(tmp_path / DAY1)][2:] == [
        "Started",
        "Deployed",
    ]
    assert kinds(tmp_path) == []


def test_missing_head_is_named_truncated(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)
    (tmp_path / ".head").unlink()
    assert kinds(tmp_path) == [(DAY1, 3, "truncated")]


def test_report_and_exit_code_name_the_damaged_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(tmp_path, 3)
    lines = read_lines(tmp_path / DAY1)
    lines[1] = lines[1].replace("s1", "sX")
    write_back(tmp_path / DAY1, lines)
    assert main_verify(tmp_path, [KEY]) == 1
    out = capsys.readouterr().out
    assert "FAILED — 1 problem(s)" in out
    assert f"{DAY1}:2  edited" in out
    assert main_verify(tmp_path / "nowhere", [KEY]) == 2  # nothing checked: not "damaged"


def test_empty_directory_verifies_with_no_lines(tmp_path: Path) -> None:
    report = verify(tmp_path, [KEY])
    assert report.ok and report.lines == 0
    assert "no lines yet" in format_report(report)


# --- the key --------------------------------------------------------------------------------


def test_rewriting_the_whole_log_without_the_key_is_named(tmp_path: Path) -> None:
    """Someone with file access recomputes every hash (plain SHA-256: no key) and .head."""
    write_lines(tmp_path, 3)
    lines = [json.loads(line) for line in read_lines(tmp_path / DAY1)]
    prev = ZERO_HASH
    for record in lines:
        record["step"] = "rewritten"
        record["prev"] = prev
        record["hash"] = record_hash(record)  # no key: the best an outsider can do
        prev = record["hash"]
    write_back(tmp_path / DAY1, [json.dumps(r) + "\n" for r in lines])
    head = json.loads((tmp_path / ".head").read_text())
    (tmp_path / ".head").write_text(json.dumps({**head, "hash": prev}))

    assert {k for _, _, k in kinds(tmp_path)} == {"edited"}
    assert len(kinds(tmp_path)) == 3


def test_dropping_the_key_id_to_pass_as_unkeyed_is_named(tmp_path: Path) -> None:
    write_lines(tmp_path, 3)
    lines = [json.loads(line) for line in read_lines(tmp_path / DAY1)]
    forged = {k: v for k, v in lines[1].items() if k != "kid"}
    forged["step"] = "forged"
    forged["hash"] = record_hash(forged)
    lines[2]["prev"] = forged["hash"]  # relinking the next line needs the key...
    lines[1] = forged
    write_back(tmp_path / DAY1, [json.dumps(r) + "\n" for r in lines])

    found = kinds(tmp_path)
    assert (DAY1, 2, "edited") in found  # an unkeyed line after keyed ones
    assert (DAY1, 3, "edited") in found  # ...and line 3 no longer matches its HMAC


def test_verify_without_the_key_cannot_pass(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)

    report = verify(tmp_path)

    assert not report.ok and {p.kind for p in report.problems} == {"key"}


def test_unkeyed_lines_from_before_the_key_stay_verifiable_and_are_counted(
    tmp_path: Path,
) -> None:
    unkeyed = AuditLog(tmp_path, KST, clock=ManualClock(START))
    for i in range(3):
        unkeyed.append_sync("StepSucceeded", step=f"old{i}")
    keyed = make_log(tmp_path)
    keyed.ensure_keyed()
    keyed.append_sync("Started")

    events = [json.loads(line)["event"] for line in read_lines(tmp_path / DAY1)]
    report = verify(tmp_path, [KEY])

    assert events[3:] == ["AuditKeyed", "Started"]
    assert report.ok, format_report(report)
    assert report.unkeyed == 3 and "3 line(s) were written before the chain was keyed" in (
        format_report(report)
    )


def test_a_rotated_key_is_marked_and_both_keys_verify(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)
    new_key = b"the-next-audit-key-0123456789abcdef012345"
    rotated = AuditLog(tmp_path, KST, clock=ManualClock(START), key=new_key)
    rotated.append_sync("Started")

    events = [json.loads(line)["event"] for line in read_lines(tmp_path / DAY1)]
    assert events[2:] == ["AuditKeyRotated", "Started"]
    assert verify(tmp_path, [new_key, KEY]).ok
    assert {p.kind for p in verify(tmp_path, [new_key]).problems} == {"key"}


def test_published_heads_catch_a_rewrite_by_someone_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_lines(tmp_path, 3)
    published = log.append_sync("Deployed")
    log.append_sync("StepStarted")
    heads = tmp_path / "published.txt"
    heads.write_text(f"🔏 audit head: seq {published.seq} hash {published.hash} ({DAY1})\n")
    assert main_verify(tmp_path, [KEY], heads) == 0
    assert "1 published head(s) match" in capsys.readouterr().out

    # An insider with the key rewrites line 2 and re-chains everything after it.
    lines = [json.loads(line) for line in read_lines(tmp_path / DAY1)]
    lines[1]["step"] = "rewritten"
    for n in range(1, len(lines)):
        lines[n]["prev"] = lines[n - 1]["hash"]
        lines[n]["hash"] = record_hash(lines[n], KEY)
    write_back(tmp_path / DAY1, [json.dumps(r, ensure_ascii=False) + "\n" for r in lines])
    head = json.loads((tmp_path / ".head").read_text())
    (tmp_path / ".head").write_text(json.dumps({**head, "hash": lines[-1]["hash"]}))
    assert verify(tmp_path, [KEY]).ok  # the chain alone cannot tell

    assert main_verify(tmp_path, [KEY], heads) == 1
    out = capsys.readouterr().out
    assert f"{DAY1}:4  published" in out and "rewritten after its head was published" in out


def test_a_published_head_beyond_the_end_names_the_cut(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)
    report = verify(tmp_path, [KEY], [(9, "ab" * 32)])
    assert [p.kind for p in report.problems] == ["published"]


CLI_ENV = {"PATH": "/usr/bin:/bin"}


def test_cli_verify_needs_the_key_and_says_which_variable(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)
    run = [sys.executable, "-m", "bot.cli", "audit", "verify", "--dir", str(tmp_path)]
    root = Path(__file__).resolve().parents[2]

    without = subprocess.run(run, cwd=root, env=CLI_ENV, capture_output=True, text=True)
    with_key = subprocess.run(
        run, cwd=root, env={**CLI_ENV, "MCMS_AUDIT_KEY": KEY.decode()}, capture_output=True,
        text=True,
    )  # fmt: skip

    assert without.returncode == 2 and "set MCMS_AUDIT_KEY" in without.stderr
    assert with_key.returncode == 0 and "OK" in with_key.stdout


# --- retention --------------------------------------------------------------------------------


def test_prune_removes_old_days_and_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    clock = ManualClock(START)
    for _ in range(3):
        write_lines(tmp_path, 2, clock)
        clock.advance(timedelta(days=1))
    removed = prune(tmp_path, keep_from=date(2026, 11, 29))
    assert [p.name for p in removed] == ["2026-11-27.jsonl", "2026-11-28.jsonl"]
    report = verify(tmp_path, [KEY])
    assert report.ok, format_report(report)
    assert report.lines == 2
    (tmp_path / ".anchor").unlink()
    assert kinds(tmp_path) == [("2026-11-29.jsonl", 1, "deleted")]


def test_prune_never_removes_the_newest_file(tmp_path: Path) -> None:
    write_lines(tmp_path, 2)
    assert prune(tmp_path, keep_from=date(2030, 1, 1)) == []
    assert verify(tmp_path, [KEY]).ok


# --- concurrency ------------------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from zoneinfo import ZoneInfo
from adapters.audit import AuditLog
directory, count, name = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
while not (directory / "go").exists():
    time.sleep(0.005)
log = AuditLog(directory, ZoneInfo("Asia/Seoul"))
for i in range(count):
    log.append_sync("StepSucceeded", run_id=name, detail={"i": i})
"""


@pytest.mark.slow
async def test_concurrent_processes_threads_and_tasks_keep_one_chain(tmp_path: Path) -> None:
    """4 processes x 200 lines, 4 threads x 50 and 50 asyncio tasks, all at once."""
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "200", f"p{n}"])
        for n in range(4)
    ]
    log = AuditLog(tmp_path, KST)

    def thread_writer(name: str) -> None:
        for i in range(50):
            log.append_sync("StepStarted", run_id=name, detail={"i": i})

    (tmp_path / "go").touch()
    threads = [threading.Thread(target=thread_writer, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    await asyncio.gather(*(log.append("Requested", run_id="a", detail={"i": i}) for i in range(50)))
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=60) == 0

    records = [
        json.loads(line)
        for path in sorted(tmp_path.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == 4 * 200 + 4 * 50 + 50
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for n in range(4):
        mine = [r["detail"]["i"] for r in records if r["run_id"] == f"p{n}"]
        assert mine == list(range(200))  # each writer's lines in its own order
    report = verify(tmp_path)
    assert report.ok, format_report(report)
