"""Application logs: structured JSON lines in logs/app/, a short human line on stderr.

Secrets never reach a log: every formatted line passes through a redactor that knows the
values of the secret environment variables the config names, and replaces them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


def make_redactor(secret_values: Iterable[str]) -> Callable[[str], str]:
    """A function that masks every given secret (longest first, so overlaps stay masked)."""
    values = sorted({v for v in secret_values if v and len(v) >= 4}, key=len, reverse=True)

    def redact(text: str) -> str:
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        return text

    return redact


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
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = self._redact(value if isinstance(value, str) else str(value))
        if record.exc_info:
            entry["exc"] = self._redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, redact: Callable[[str], str]) -> None:
        super().__init__(fmt)
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))


def setup_logging(
    app_logs_dir: Path, redact: Callable[[str], str], level: int = logging.INFO
) -> Path:
    """Route the root logger to logs/app/bot.jsonl (JSON) and stderr (short lines)."""
    app_logs_dir.mkdir(parents=True, exist_ok=True)
    path = app_logs_dir / "bot.jsonl"
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(JsonFormatter(redact))
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", redact)
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.addHandler(file_handler)
    root.addHandler(console)
    root.setLevel(level)
    # Third-party chatter (every HTTP request of the connector client) is noise at INFO.
    for noisy in ("urllib3", "msrest", "aiohttp.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
