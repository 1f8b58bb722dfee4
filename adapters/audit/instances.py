"""`audit verify` over instances that share a PostgreSQL store: one chain per instance
(`<audit_dir>/<instance id>/`), each verified on its own, then their order across instances.

The cross-instance check is about runs: a run belongs to one instance at a time, and it
changes hands only forward (the instance it ran on, then the one that took it over when its
lease ran out). So, merged by time, one run's records written by whoever runs it — the
executor's and the recovery's (RUN_OWNER_EVENTS) — never go back to an instance that had
handed it on: that would be two instances acting on one run at once (a split brain), or
clocks further apart than the lease. Records any instance may write about a run while
another runs it (`cancel RUN` handled elsewhere, an alert, a Switch back asked on another
instance) are not part of that order.

A directory that holds a chain of its own and instance chains beside it (the bot ran alone
on SQLite, then as instances on PostgreSQL) is verified whole: its own chain and each
instance's. Within one chain, times follow the sequence (the writer reads its clock under the
chain's lock), so a time going backwards is reported too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from adapters.audit.chain import HEAD_NAME, day_files
from adapters.audit.log import AuditEvent
from adapters.audit.verifier import Problem, VerifyReport, format_report, verify

# What only the instance running a run writes under its id (bot/runs: the executor, its
# steps and its end; recovery settling it after its owner died).
RUN_OWNER_EVENTS = frozenset(
    {
        AuditEvent.STARTED, AuditEvent.STEP_STARTED, AuditEvent.STEP_SUCCEEDED,
        AuditEvent.STEP_FAILED, AuditEvent.DEPLOYED, AuditEvent.ROLLED_BACK,
        AuditEvent.FAILED, AuditEvent.CANCELLED, AuditEvent.INTERRUPTED,
        "HostsAfterInterrupt", "DrTest",
    }
)  # fmt: skip


def _is_chain(directory: Path) -> bool:
    return bool(day_files(directory)) or (directory / HEAD_NAME).exists()


def instance_dirs(directory: Path) -> list[Path]:
    """The per-instance chains under `directory` (none when it is one chain alone)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and _is_chain(p))


def chains_of(directory: Path) -> list[Path]:
    """Every chain `audit verify` checks in `directory`: its own (the single instance's,
    or the one it kept from before instances) and each instance's."""
    own = [directory] if directory.is_dir() and _is_chain(directory) else []
    return own + instance_dirs(directory)


@dataclass(frozen=True)
class _Said:
    at: datetime
    instance: str
    file: str
    line: int
    run_id: str
    event: str


def _records(chain: Path) -> list[_Said]:
    said = []
    for path in day_files(chain):
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            try:
                record = json.loads(raw)
                at = datetime.fromisoformat(record["ts"])
            except (ValueError, KeyError, TypeError):
                continue  # the chain's own verification reports a malformed line
            said.append(
                _Said(at, chain.name, f"{chain.name}/{path.name}", number,
                      record.get("run_id", ""), record.get("event", ""))
            )  # fmt: skip
    return said


def cross_instance_problems(chains: Sequence[Path]) -> list[Problem]:
    """Times going backwards within a chain; a run handed back to an earlier instance."""
    problems: list[Problem] = []
    runs: dict[str, list[_Said]] = {}
    for chain in chains:
        said = _records(chain)
        for before, after in pairwise(said):
            if after.at < before.at:
                problems.append(
                    Problem(after.file, after.line, "reordered",
                            f"written at {after.at.isoformat()}, before the line above it "
                            f"({before.at.isoformat()}): this instance's clock went back")
                )  # fmt: skip
        for s in said:
            if s.run_id and s.event in RUN_OWNER_EVENTS:
                runs.setdefault(s.run_id, []).append(s)
    for run_id, said in runs.items():
        handed_on: set[str] = set()
        current = None
        for s in sorted(said, key=lambda s: s.at):
            if s.instance == current:
                continue
            if s.instance in handed_on:
                problems.append(
                    Problem(s.file, s.line, "reordered",
                            f"run {run_id}: instance {s.instance} wrote at {s.at.isoformat()}, "
                            f"after instance {current} had taken the run over — two instances "
                            "acted on one run, or their clocks differ by more than the lease")
                )  # fmt: skip
            if current is not None:
                handed_on.add(current)
            current = s.instance
    return problems


@dataclass(frozen=True)
class InstancesReport:
    """Every instance's chain, and what their order across instances shows."""

    reports: tuple[VerifyReport, ...]
    order: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.order and all(r.ok for r in self.reports)


def verify_instances(
    chains: Sequence[Path],
    keys: Sequence[bytes] = (),
    published: Sequence[tuple[int, str]] = (),
) -> InstancesReport:
    """Verify each chain (`published` heads may come from any of them), then the order."""
    reports = tuple(verify(chain, keys, published if len(chains) == 1 else ()) for chain in chains)
    return InstancesReport(reports, tuple(cross_instance_problems(chains)))


def format_instances(report: InstancesReport) -> str:
    out = [format_report(r) for r in report.reports]
    if report.order:
        out.append(f"Across instances: FAILED — {len(report.order)} problem(s):")
        out += [f"  {p.file}:{p.line}  {p.kind:<9}  {p.message}" for p in report.order]
    else:
        names = ", ".join(r.directory.name for r in report.reports)
        out.append(f"Across instances ({names}): OK — every run's records in one order.")
    return "\n".join(out)
