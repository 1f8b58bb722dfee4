"""What this machine lacks to run a config: checked by `check-config` and before `run` starts.

The config file itself is valid (pydantic said so); these are facts about the Python
environment and the files next to it — a WinRM transport whose pip extra is not installed,
a CA bundle that is not there — which would otherwise surface only at the first call to a
host, at 3 a.m.
"""

from __future__ import annotations

from adapters.winrm.transport import missing_extra
from commands.config import Config, Host


def winrm_hosts(config: Config) -> list[tuple[str, Host]]:
    """Every host the bot reaches over WinRM, with its key in the file."""
    hosts = [
        (f"environments.{name}.hosts[{i}]", host)
        for name, env in config.environments.items()
        for i, host in enumerate(env.hosts)
    ]
    hosts += [
        (f"pairs.{name}.router.host", pair.router.host) for name, pair in config.pairs.items()
    ]
    hosts += [(f"runner_hosts[{i}]", host) for i, host in enumerate(config.runner_hosts)]
    return hosts


def machine_problems(config: Config) -> list[str]:
    """'key: why' lines, in the config's order; empty when this machine can run it."""
    problems: list[str] = []
    needs: dict[str, list[str]] = {}
    for key, host in winrm_hosts(config):
        extra = missing_extra(host.transport)
        if extra is not None:
            needs.setdefault(extra, []).append(f"{key}.transport")
        path = host.ca_trust_path
        if path is not None and not (path.is_file() or path.is_dir()):
            problems.append(
                f"{key}.ca_trust_path: {path} does not exist here (a PEM file or a "
                "directory of hashed certificates)"
            )
    for extra, keys in needs.items():
        problems.append(
            f"{', '.join(keys)}: transport {extra!r} needs the {extra!r} extra, which is not "
            f"installed in this Python: pip install 'mcms-bot[{extra}]' "
            f"(it brings pywinrm[{extra}])"
        )
    return problems
