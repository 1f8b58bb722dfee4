"""Prove an audit directory is whole, or name each damaged line and what happened to it.

Rules (format in audit_chain.py), each problem is reported once, at the line it concerns:
- malformed: a line that is not a chain record (bad JSON, missing fields, torn last line);
- inserted: a record the chain does not run through — its seq is taken by the line the next
  line links to, it sits at or before the retention anchor, or it lies after `.head`;
- reordered: a record outside the longest run of increasing seq in file order (so a swap or a
  moved line names the moved line, not every line after it);
- deleted: seq numbers missing inside the chain, named at the line after the hole (malformed
  lines standing in the hole account for it);
- edited: a record whose content no longer matches its hash, or whose hash is not the one
  the next line (or `.head`) links to (rewritten and re-hashed);
- truncated: the log ends before the line `.head` records, `.head` is missing or unreadable,
  or the writer left an `AuditTailMismatch` line because it found the tail cut;
- key: a keyed line whose key was not given (the current key and any previous ones are
  needed to verify a log that lived through a rotation);
- published: a head hash published outside the box (`--against FILE`) that the log no longer
  has at that seq — the log was rewritten after it was published, key or not.
Unkeyed lines (written before the chain was keyed) are checked with plain SHA-256 and
counted; an unkeyed line after a keyed one is `edited` (whoever wrote it had no key).
"""

from __future__ import annotations

import bisect
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

from adapters.audit.chain import (
    ANCHOR_NAME,
    GENESIS,
    HEAD_NAME,
    MIN_KEY_LENGTH,
    TAIL_MISMATCH_EVENT,
    ChainPoint,
    ChainStateError,
    Head,
    day_files,
    key_id,
    parse_record,
    read_anchor,
    read_head,
    record_hash,
    split_lines,
)

ProblemKind = Literal[
    "edited", "deleted", "inserted", "reordered", "malformed", "truncated", "key", "published"
]
# A published head as the bot writes it (Teams post, app log): "seq 123 hash <64 hex>".
PUBLISHED_HEAD = re.compile(r"\bseq[ =:]+(\d+)\W+hash[ =:]+([0-9a-f]{64})\b")


class Problem(NamedTuple):
    """One finding: `line` is 1-based in `file` (0 when the problem is a state file)."""

    file: str
    line: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one audit directory; `ok` iff there is no problem."""

    directory: Path
    lines: int
    files: int
    problems: tuple[Problem, ...]
    last: ChainPoint | None
    unkeyed: int = 0  # lines written before the chain was keyed (plain SHA-256)
    published_checked: int = 0  # published heads found in the log as published

    @property
    def ok(self) -> bool:
        return not self.problems


def published_heads(text: str) -> list[tuple[int, str]]:
    """Every "seq N hash H" in `text` (a saved Teams thread, the app log...), in order."""
    return [(int(seq), digest) for seq, digest in PUBLISHED_HEAD.findall(text)]


@dataclass(frozen=True)
class _Entry:
    index: int
    file: str
    line: int
    record: dict[str, Any] | None
    error: str | None
    self_ok: bool = False
    # The record's own seq, unless it fails its hash and the chain shows where it belongs.
    seq: int = 0
    kid: str = ""  # "" for an unkeyed line

    @property
    def hash(self) -> str:
        assert self.record is not None
        return str(self.record["hash"])

    @property
    def prev(self) -> str:
        assert self.record is not None
        return str(self.record["prev"])

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def verify(
    directory: Path,
    keys: Sequence[bytes] = (),
    published: Sequence[tuple[int, str]] = (),
) -> VerifyReport:
    """Check every line of every day file in `directory` against the chain and `.head`;
    keyed lines with `keys` (current and previous), and the chain against `published` heads."""
    keyring = {key_id(k): k for k in keys}
    problems: list[Problem] = []
    try:
        anchor = read_anchor(directory)
    except ChainStateError as exc:
        anchor = GENESIS
        problems.append(Problem(ANCHOR_NAME, 0, "malformed", str(exc)))
    # Files at or before the anchor were being pruned when a crash stopped the deletion.
    files = [p for p in day_files(directory) if p.name > anchor.file]
    try:
        head: Head | None = read_head(directory)
        head_error = None
    except ChainStateError as exc:
        head, head_error = None, str(exc)
    entries = _read(files, keyring)
    problems += [Problem(e.file, e.line, "malformed", e.error) for e in entries if e.error]
    problems += [
        Problem(
            e.file,
            e.line,
            "key",
            f"written with key {e.kid}, which was not given: set the audit key it was written "
            "with (the current one, or a previous one after a rotation)",
        )
        for e in entries
        if e.record is not None and e.kid and e.kid not in keyring
    ]
    records = _place_edited([e for e in entries if e.record is not None], head)
    chain, strays = _split_inserted(records, anchor)
    problems += strays
    problems += _reordered(chain)
    by_seq = sorted(chain, key=lambda e: e.seq)
    problems += _holes_and_links(by_seq, anchor, entries)
    problems += [
        Problem(e.file, e.line, "edited", "content does not match its hash")
        for e in chain
        if not e.self_ok
    ]
    problems += _against_head(head, head_error, by_seq, entries)
    problems += _unkeyed_after_keyed(by_seq)
    if keyring and by_seq and not by_seq[-1].kid:
        end = by_seq[-1]
        msg = (
            "the log ends with an unkeyed line: a keyed bot marks its key at start, so its "
            "keyed lines were replaced (or the bot never ran with the key here)"
        )
        problems.append(Problem(end.file, end.line, "key", msg))
    against, checked = _against_published(published, by_seq, anchor)
    problems += against
    last = by_seq[-1] if by_seq else None
    return VerifyReport(
        directory=directory,
        lines=len(entries),
        files=len(files),
        problems=tuple(sorted(problems, key=lambda p: (p.file, p.line, p.kind))),
        last=None if last is None else ChainPoint(last.file, last.seq, last.hash),
        unkeyed=sum(1 for e in by_seq if not e.kid),
        published_checked=checked,
    )


def _unkeyed_after_keyed(by_seq: list[_Entry]) -> list[Problem]:
    keyed_at: _Entry | None = None
    problems = []
    for e in by_seq:
        if e.kid:
            keyed_at = keyed_at or e
        elif keyed_at is not None:
            msg = (
                f"an unkeyed line after the chain was keyed (at {keyed_at.where}): written by "
                "someone without the audit key"
            )
            problems.append(Problem(e.file, e.line, "edited", msg))
    return problems


def _against_published(
    published: Sequence[tuple[int, str]], by_seq: list[_Entry], anchor: ChainPoint
) -> tuple[list[Problem], int]:
    at = {e.seq: e for e in by_seq}
    last_seq = by_seq[-1].seq if by_seq else anchor.seq
    problems, checked = [], 0
    for seq, digest in published:
        entry = at.get(seq)
        if entry is None:
            if seq > last_seq:
                msg = (
                    f"a head was published for seq {seq} ({digest[:16]}…), "
                    f"the log ends at {last_seq}"
                )
                where = by_seq[-1] if by_seq else None
                problems.append(
                    Problem(
                        where.file if where else "", where.line if where else 0, "published", msg
                    )
                )
            continue  # pruned by retention (or in a hole already reported): nothing to compare
        if entry.hash != digest:
            msg = (
                f"rewritten after its head was published: seq {seq} was published as "
                f"{digest[:16]}…, the log now says {entry.hash[:16]}…"
            )
            problems.append(Problem(entry.file, entry.line, "published", msg))
        else:
            checked += 1
    return problems, checked


def _read(files: list[Path], keyring: dict[str, bytes]) -> list[_Entry]:
    entries: list[_Entry] = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            exc.filename = exc.filename or str(path)  # a read error may not name its file
            raise
        lines, fragment = split_lines(data)
        for number, raw in enumerate(lines, 1):
            parsed = parse_record(raw)
            if isinstance(parsed, str):
                entries.append(_Entry(len(entries), path.name, number, None, parsed))
                continue
            kid = str(parsed.get("kid", ""))
            if kid and kid not in keyring:
                ok = True  # cannot be checked: reported as a `key` problem instead
            else:
                ok = record_hash(parsed, keyring.get(kid) if kid else None) == parsed["hash"]
            entries.append(
                _Entry(len(entries), path.name, number, parsed, None, ok, parsed["seq"], kid)
            )
        if fragment:
            error = "incomplete last line (torn write or cut file)"
            entries.append(_Entry(len(entries), path.name, len(lines) + 1, None, error))
    return entries


def _place_edited(records: list[_Entry], head: Head | None) -> list[_Entry]:
    """Give a record that fails its hash the seq the chain shows for it — the next line
    links to its hash, or `.head` names it — since its own `seq` may be the edited field."""
    referrers = {e.prev: e for e in records if e.self_ok}
    placed = []
    for e in records:
        referrer = referrers.get(e.hash)
        if not e.self_ok and referrer is not None:
            e = replace(e, seq=referrer.seq - 1)
        elif not e.self_ok and head is not None and e.hash == head.hash:
            e = replace(e, seq=head.seq)
        placed.append(e)
    return placed


def _split_inserted(
    records: list[_Entry], anchor: ChainPoint
) -> tuple[list[_Entry], list[Problem]]:
    """Keep one record per seq — the one the chain runs through — and name the others."""
    groups: dict[int, list[_Entry]] = defaultdict(list)
    for e in records:
        groups[e.seq].append(e)
    previous = {e.index: p for p, e in zip([None, *records], records, strict=False)}
    strays: list[Problem] = []
    chain: list[_Entry] = []
    for e in records:
        if e.seq <= anchor.seq:
            msg = f"seq {e.seq} is at or before the retention anchor (seq {anchor.seq})"
            strays.append(Problem(e.file, e.line, "inserted", msg))
            continue
        group = groups[e.seq]
        if len(group) == 1:
            chain.append(e)
            continue

        kept = max(group, key=lambda c: _fit(c, groups, previous[c.index], anchor))
        if e is kept:
            chain.append(e)
        else:
            msg = f"not part of the chain: seq {e.seq} belongs to {kept.where}"
            strays.append(Problem(e.file, e.line, "inserted", msg))
    return chain, strays


def _fit(
    c: _Entry, groups: dict[int, list[_Entry]], before: _Entry | None, anchor: ChainPoint
) -> tuple[bool, bool, bool, bool, int]:
    """How well `c` fits its place: linked to by the next seq, linking to the previous one,
    matching its own hash, right after the previous seq in the file; earliest wins ties."""
    linked_in = c.seq == anchor.seq + 1 and c.prev == anchor.hash
    linked_in = linked_in or any(c.prev == p.hash for p in groups.get(c.seq - 1, []))
    return (
        any(n.prev == c.hash for n in groups.get(c.seq + 1, [])),
        linked_in,
        c.self_ok,
        before is not None and before.seq == c.seq - 1,
        -c.index,
    )


def _reordered(chain: list[_Entry]) -> list[Problem]:
    """Name the records outside the longest increasing run of seq (file order)."""
    tails: list[int] = []  # seq ending the best run of each length
    tail_at: list[int] = []  # position in `chain` of that seq
    parent = [-1] * len(chain)
    for i, e in enumerate(chain):
        k = bisect.bisect_left(tails, e.seq)
        parent[i] = tail_at[k - 1] if k else -1
        if k == len(tails):
            tails.append(e.seq)
            tail_at.append(i)
        else:
            tails[k], tail_at[k] = e.seq, i
    keep: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    by_seq = {e.seq: e for e in chain}
    problems = []
    for i, e in enumerate(chain):
        if i not in keep:
            after = by_seq.get(e.seq - 1)
            belongs = f"; it belongs after {after.where}" if after else ""
            msg = f"seq {e.seq} is out of order{belongs}"
            problems.append(Problem(e.file, e.line, "reordered", msg))
    return problems


def _holes_and_links(
    by_seq: list[_Entry], anchor: ChainPoint, entries: list[_Entry]
) -> list[Problem]:
    problems: list[Problem] = []
    before: _Entry | None = None
    for e in by_seq:
        prev_seq, prev_hash = (before.seq, before.hash) if before else (anchor.seq, anchor.hash)
        missing = e.seq - prev_seq - 1
        assert e.record is not None
        if e.record["event"] == TAIL_MISMATCH_EVENT:
            problems.append(_marker_problem(e, prev_seq, missing))
        elif missing > 0:
            lo = before.index if before else -1
            stand_ins = sum(1 for x in entries if x.error and lo < x.index < e.index)
            if missing > stand_ins:
                hint = " (a whole day file may be gone)" if e.line == 1 else ""
                span = f"seq {prev_seq + 1}" + (f"..{e.seq - 1}" if missing > 1 else "")
                msg = f"{missing} line(s) missing before this line ({span}){hint}"
                problems.append(Problem(e.file, e.line, "deleted", msg))
        elif e.prev != prev_hash:
            if before is None:
                msg = "the first line does not link to the start of the log"
                problems.append(Problem(e.file, e.line, "edited", msg))
            elif before.self_ok:
                msg = f"rewritten and re-hashed: the next line ({e.where}) links to another hash"
                problems.append(Problem(before.file, before.line, "edited", msg))
        before = e
    return problems


def _marker_problem(e: _Entry, prev_seq: int, missing: int) -> Problem:
    assert e.record is not None
    detail = e.record.get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    msg = f"the writer found the log cut short here ({reason or 'no reason given'})"
    if missing > 0:
        msg += f"; seq {prev_seq + 1}..{e.seq - 1} are gone"
    return Problem(e.file, e.line, "truncated", msg)


def _against_head(
    head: Head | None, head_error: str | None, by_seq: list[_Entry], entries: list[_Entry]
) -> list[Problem]:
    if head_error is not None:
        return [Problem(HEAD_NAME, 0, "truncated", f"{head_error}: the end of the log is unproven")]
    last = by_seq[-1] if by_seq else None
    if head is None:
        if last is None:
            return []
        end = entries[-1]
        msg = f"{HEAD_NAME} is missing: the end of the log cannot be proven"
        return [Problem(end.file, end.line + 1, "truncated", msg)]
    if last is None or last.seq < head.seq:
        in_file = [e.line for e in entries if e.file == head.file]
        line = max(in_file, default=0) + 1
        ends = f"ends at seq {last.seq}" if last else "is empty"
        msg = (
            f"{head.seq - (last.seq if last else 0)} line(s) missing at the end: "
            f"{HEAD_NAME} records seq {head.seq} in {head.file}, the log {ends}"
        )
        return [Problem(head.file, line, "truncated", msg)]
    problems = [
        Problem(
            e.file,
            e.line,
            "inserted",
            f"after the last line the writer recorded (seq {head.seq}): written by something "
            "else, or the writer stopped before updating " + HEAD_NAME,
        )
        for e in by_seq
        if e.seq > head.seq
    ]
    at_head = next((e for e in by_seq if e.seq == head.seq), None)
    if at_head is not None and at_head.hash != head.hash and at_head.self_ok:
        msg = f"rewritten and re-hashed: {HEAD_NAME} records another hash for seq {head.seq}"
        problems.append(Problem(at_head.file, at_head.line, "edited", msg))
    return problems


def format_report(report: VerifyReport) -> str:
    """The report as the CLI prints it: a verdict line, then one line per problem."""
    where = f"Audit log {report.directory}"
    notes = ""
    if report.unkeyed:
        notes += (
            f" {report.unkeyed} line(s) were written before the chain was keyed (plain "
            "SHA-256: provable only against published heads)."
        )
    if report.published_checked:
        notes += f" {report.published_checked} published head(s) match."
    if report.ok:
        if report.last is None:
            return f"{where}: OK — no lines yet."
        return (
            f"{where}: OK — {report.lines} lines in {report.files} file(s); chain intact "
            f"to seq {report.last.seq} (hash {report.last.hash[:16]}…).{notes}"
        )
    out = [
        f"{where}: FAILED — {len(report.problems)} problem(s) in {report.lines} lines, "
        f"{report.files} file(s):"
    ]
    out += [f"  {p.file}:{p.line}  {p.kind:<9}  {p.message}" for p in report.problems]
    return "\n".join(out)


def main_verify(
    directory: Path,
    keys: Sequence[bytes],
    against: Path | None = None,
) -> int:
    """`mcms-bot audit verify`: print the report; the exit status.

    0: intact; 1: damage found (the report names each line); 2: nothing could be checked
    (no such directory, a file unreadable, no usable key, no head in `against`) — so a
    script never mistakes "cannot read" for "tampered", nor either for "intact".
    """
    if not directory.is_dir():
        print(f"Audit log {directory}: no such directory (check paths.audit_dir)", file=sys.stderr)
        return 2
    if any(len(k) < MIN_KEY_LENGTH for k in keys):
        print(
            f"an audit key is shorter than {MIN_KEY_LENGTH} characters: not the bot's key",
            file=sys.stderr,
        )
        return 2
    published: list[tuple[int, str]] = []
    if against is not None:
        try:
            published = published_heads(against.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            print(f"cannot read {against}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if not published:
            print(
                f"{against}: no published head (a line with `seq N hash <64 hex>`) found",
                file=sys.stderr,
            )
            return 2
    from adapters.audit.instances import chains_of, format_instances, verify_instances

    # One chain per instance (PostgreSQL), beside the directory's own from before, if any:
    # every one is verified, none left out because another is there.
    chains = chains_of(directory)
    alone = chains in ([], [directory])
    if not alone and against is not None:
        print(
            f"{directory} holds one chain per instance ({', '.join(c.name for c in chains)}): "
            "check published heads against one of them, with --dir "
            f"{directory}/<instance>",
            file=sys.stderr,
        )
        return 2
    try:
        if not alone:
            instances = verify_instances(chains, keys)
            print(format_instances(instances))
            return 0 if instances.ok else 1
        report = verify(directory, keys, published)
    except OSError as exc:
        where = exc.filename or directory
        print(f"Audit log {directory}: cannot read {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.ok else 1
