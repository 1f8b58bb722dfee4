"""Reading /proc in tests: is a process still running (a DR suite's tree must not be)?"""

from __future__ import annotations

from pathlib import Path


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
