"""Shared pieces of the config schema: name patterns, the strict base model, key checks."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

# Names end up in XPath filters and IIS:\ paths on the host (docs/windows-hosts.md): ASCII only,
# because PowerShell treats U+2018..U+201B as quote characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+){1,3}(-[A-Za-z0-9]+)?$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
ENV_VAR_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")

# break_glass: may approve alone, with a reason, where an environment allows it (audited,
# announced in the environment's alert conversations).
Role = Literal["operator", "approver", "break_glass"]
# Entra object ids (users and groups) are GUIDs; the demo uses GUID-shaped test ids.
OBJECT_ID_PATTERN = r"^[0-9A-Fa-f-]{8,64}$"


def is_loopback_host(host: str) -> bool:
    """True for a name or address that only this machine can reach (127/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 ASCII letters, digits, space, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _check_env_var(value: str) -> str:
    if not ENV_VAR_PATTERN.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an environment variable name (upper-case letters, digits, _)"
        )
    return value


EnvVarName = Annotated[str, Field(min_length=1)]
