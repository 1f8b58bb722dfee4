"""Application logs: structured JSON lines in logs/app/, a short human line on stderr.

- One file per day: `bot.jsonl` is today's, rotated at midnight UTC to `bot.jsonl.YYYY-MM-DD`;
  rotation deletes all but the newest `keep_days` of those (retention.app_log_days, 14).
- What a line is about travels as fields, never inside the message text: the correlation id
  of the Teams activity being handled and the run id of the run being executed come from
  `log_fields()` (context variables, so every line logged under it carries them, including
  tasks started under it), anything else from `extra=`.
- Secrets never reach a log: every field passes through a redactor that knows the values of
  the secret environment variables the config names, and replaces them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import sys
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path

LOG_FILE = "bot.jsonl"
# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}
# The fields `log_fields()` may set, in the order the console line shows them.
CONTEXT_FIELDS = ("correlation_id", "run_id", "request_id")
_context: ContextVar[dict[str, str] | None] = ContextVar("mcms_log_fields", default=None)


@contextlib.contextmanager
def log_fields(**fields: str | None) -> Iterator[None]:
    """Every line logged inside (and in tasks created inside) carries these fields."""
    token = _context.set(_merged(fields))
    try:
        yield
    finally:
        _context.reset(token)


def bind_log_fields(**fields: str | None) -> None:
    """Like `log_fields`, for the rest of the current task (a task's context is its own copy)."""
    _context.set(_merged(fields))


def _merged(fields: dict[str, str | None]) -> dict[str, str]:
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {', '.join(sorted(unknown))}")
    return {**(_context.get() or {}), **{k: v for k, v in fields.items() if v}}


class ContextFilter(logging.Filter):
    """Copies the `log_fields()` of the moment onto each record (`extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def make_redactor(secret_values: Iterable[str]) -> Callable[[str], str]:
    """A function that masks every given secret (longest first, so overlaps stay masked)."""
    values = sorted({v for v in secret_values if v and len(v) >= 4}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        return text

    return redact


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        # Redact each value before serializing: JSON escapes quotes and backslashes, so a
        # secret containing them would slip past a replace on the finished line.
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": self._redact(record.getMessage()),
        }
        for key, value in _fields(record).items():
            entry[key] = self._redact(value if isinstance(value, str) else str(value))
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`time LEVEL logger: message [correlation_id=… run_id=…]`, redacted."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        shown = [f"{k}={fields[k]}" for k in CONTEXT_FIELDS if k in fields]
        if shown:
            first, _, rest = line.partition("\n")  # a traceback stays below the fields
            line = f"{first} [{' '.join(shown)}]" + (f"\n{rest}" if rest else "")
        return self._redact(line)


def setup_logging(
    app_logs_dir: Path,
    redact: Callable[[str], str],
    level: int | str = logging.INFO,
    keep_days: int = 14,
) -> Path:
    """Route the root logger to logs/app/bot.jsonl (JSON, daily files) and stderr (short lines)."""
    app_logs_dir.mkdir(parents=True, exist_ok=True)
    path = app_logs_dir / LOG_FILE
    file_handler = logging.handlers.TimedRotatingFileHandler(
        path, when="midnight", utc=True, backupCount=keep_days, encoding="utf-8"
    )
    file_handler.setFormatter(JsonFormatter(redact))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(ConsoleFormatter(redact))
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in (file_handler, console):
        handler.addFilter(ContextFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter (every HTTP request of the connector client) is noise at INFO.
    for noisy in ("urllib3", "msrest", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
