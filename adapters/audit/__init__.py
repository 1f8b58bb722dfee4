"""The hash-chained JSONL audit: the writer (log.py), the chain format (chain.py) and
`audit verify` (verifier.py)."""

from adapters.audit.log import AuditActor, AuditEvent, AuditLog, AuditRecord, prune
from adapters.audit.verifier import Problem, VerifyReport, format_report, main_verify, verify

__all__ = [
    "AuditActor",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "Problem",
    "VerifyReport",
    "format_report",
    "main_verify",
    "prune",
    "verify",
]
