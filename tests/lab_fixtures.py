"""Pytest fixtures for the simulated lab (lab/), shared by every lab-backed test.

Use them from a test module with
    pytest_plugins = ["tests.lab_fixtures"]  # in a test module (the lead owns conftest.py)
Each test gets a fresh lab (the demo topology on ephemeral loopback ports, files under
tmp_path): starting one takes a few milliseconds, and no state leaks between tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.winrm.hostops import HostOps
from adapters.winrm.transport import WinRMShell
from bot.demo import DEMO_AUDIT_KEY
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME, demo_hosts, demo_lab, demo_routers

ShellFactory = Callable[..., WinRMShell]
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "lab" / "demo-bot.toml"
# What the demo config reads its WinRM credentials and its audit key from (bot/demo.py sets
# them the same way).
LAB_CREDENTIALS = {
    "MCMS_LAB_WINRM_USER": DEMO_USERNAME,
    "MCMS_LAB_WINRM_PASSWORD": DEMO_PASSWORD,
    "MCMS_AUDIT_KEY": DEMO_AUDIT_KEY,
}


def write_lab_config(lab: Lab, directory: Path, *, port: int, extra: str = "") -> Path:
    """The demo config as a file, for a bot process of its own: pointed at this lab's ports,
    listening on `port`, every path under `directory`; `extra` TOML is appended."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    replacements = {
        "port = 3978": f"port = {port}",
        'package_store = "var/lab/packages"': f'package_store = "{lab.packages_dir}"',
    }
    for spec in demo_hosts(fixed_ports=True):
        replacements[f"http://127.0.0.1:{spec.winrm_port}/wsman"] = lab.winrm_url(spec.name)
        for site in spec.sites:
            replacements[f"http://127.0.0.1:{site.http_port}/"] = (
                lab.http_base(spec.name, site.name) + "/"
            )
    for router in demo_routers(fixed_ports=True):
        replacements[f"http://127.0.0.1:{router.winrm_port}/wsman"] = lab.winrm_url(router.name)
        replacements[f'"http://127.0.0.1:{router.public_port}"'] = (
            f'"{lab.public_url(router.name)}"'
        )
    for key in ("database", "audit_dir", "app_logs_dir", "smoke_logs_dir", "timeline_dir"):
        start = text.index(f"{key} = ")
        line = text[start : text.index("\n", start)]
        relative = line.split('"')[1]
        replacements[line] = f'{key} = "{directory / relative}"'
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    # /metrics on any free port: bot processes of tests running side by side never collide.
    text += "\n[metrics]\nport = 0\n"
    path = directory / "mcms-bot.toml"
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text + extra, encoding="utf-8")
    return path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A running lab: hosts lab-web01 (Lab), stage-web01 (InternalStage), prod-web01, and
    the router arr-front01 in front of the pair prod (prod-web01 live, stage-web01 standby)."""
    # As the demo: the store also holds 1.4.3, deployed nowhere yet (a forward deploy).
    with demo_lab(tmp_path / "lab") as running:
        yield running


@pytest.fixture
def lab_host(lab: Lab) -> str:
    """The name of the lab's host for the Lab environment."""
    return lab.host_for("Lab")


@pytest.fixture
def lab_router(lab: Lab) -> str:
    """The name of the lab's router host (ARR in front of the pair prod)."""
    return lab.router_for("prod")


@pytest.fixture
def lab_shell(lab: Lab) -> ShellFactory:
    """Makes a WinRMShell to a lab host: `lab_shell(host, password="wrong")`."""

    def make(
        host: str,
        *,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
        operation_timeout_s: float = 10,
    ) -> WinRMShell:
        return WinRMShell(
            lab.winrm_url(host),
            "basic",
            username,
            password,
            operation_timeout_s=operation_timeout_s,
            host=host,
        )

    return make


@pytest.fixture
def lab_ops(lab_shell: ShellFactory, lab_host: str) -> HostOps:
    """HostOps over real WinRM to the Lab environment's host."""
    return HostOps(lab_shell(lab_host))
