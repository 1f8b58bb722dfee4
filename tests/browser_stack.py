"""The browser end-to-end stack: the lab, the bot, Agents Playground, and the chromium driver.

Everything listens on ephemeral loopback ports (a `make run` on the same machine keeps its
fixed ones), lives under one temporary directory, and is stopped by process group. The
lab runs in this process (as in every lab-backed test); the bot and the Playground are
real subprocesses, started the way an operator starts them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.demo import DEMO_AUDIT_KEY
from lab.core import Lab
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME
from tests.lab_dr import point_dr_at_lab
from tests.lab_pairs import point_pairs_at_lab

ROOT = Path(__file__).resolve().parents[1]
BROWSER_DIR = ROOT / "tests" / "browser"
DEMO_CONFIG = ROOT / "lab" / "demo-bot.toml"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("MCMS_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    "`bash .ci/run` installs them; by hand: apt-get install -y chromium && "
    "npm ci --prefix tests/browser"
)

APPROVAL_TITLE = "Rollback Lab to 1.4.1?"
PROGRESS_TITLE = "Rollback Lab 1.4.2 → 1.4.1:"
BG_DEPLOY_TITLE = "Deploy InternalStage to 1.4.3?"
BG_SWITCH_TITLE = "Switch production traffic from InternalProd (1.4.0) to InternalStage (1.4.3)?"
BG_LIVE_TITLE = "Blue/green prod → 1.4.3: LIVE"
# The README's "Try it locally", as the browser test walks it (tests/test_readme_trial.py
# keeps the two the same).
SCENARIO: list[dict[str, Any]] = [
    {"id": "01-help", "say": "/help", "card": "MCMS ops bot — commands"},
    {"id": "02-smoke-lab", "say": "/smoke Lab", "card": "Smoke Lab:"},
    {"id": "03-approval-card", "say": "/rollback Lab", "card": APPROVAL_TITLE},
    # A double click: the second click reaches the bot before the card is replaced.
    {
        "id": "04-approved",
        "double_click": "Approve",
        "in_card": APPROVAL_TITLE,
        "card": "Approved by Alex Wilber",
    },
    {
        "id": "05-finished-run",
        "card": f"{PROGRESS_TITLE} succeeded",
        "count": PROGRESS_TITLE,
        "timeout_s": 60,
    },
    # Blue/green (BG-1..5): approval #1 deploys to the idle slot, its gates, card #2, the
    # switch and the watch (shortened to a few seconds by bot_config) to LIVE.
    {"id": "06-bluegreen-deploy-card", "say": "/bluegreen prod 1.4.3", "card": BG_DEPLOY_TITLE},
    {
        "id": "07-bluegreen-switch-card",
        "click": "Approve",
        "in_card": BG_DEPLOY_TITLE,
        "card": BG_SWITCH_TITLE,
        "timeout_s": 90,
    },
    {
        "id": "08-bluegreen-live",
        "click": "Approve switch",
        "in_card": BG_SWITCH_TITLE,
        "card": BG_LIVE_TITLE,
        "timeout_s": 90,
    },
]


def missing_prerequisites(package_dir: Path = BROWSER_DIR) -> list[str]:
    """What the browser tests (or the npm project at `package_dir`) need and this machine
    lacks: node, Debian's chromium, the pinned npm packages (empty: all there)."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Node.js 20+)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (Debian package chromium)")
    pins = json.loads((package_dir / "package.json").read_text())["devDependencies"]
    where = package_dir.relative_to(ROOT)
    for name, version in pins.items():
        manifest = package_dir / "node_modules" / name / "package.json"
        found = json.loads(manifest.read_text())["version"] if manifest.exists() else None
        if found != version:
            missing.append(f"npm {name}@{version} in {where} (found {found})")
    return missing


def free_port() -> int:
    """A port free on loopback right now (another process could take it: rare, and loud)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml_value(value: Any) -> str:
    """TOML for a config value: inline tables and arrays, JSON-quoted strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + pairs + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def bot_config(lab: Lab, root: Path, port: int) -> str:
    """The demo config, pointed at this lab's ports and at files under root, as TOML."""
    raw: dict[str, Any] = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    raw["server"]["port"] = port
    raw["metrics"] = {"port": 0}  # any free port: tests run side by side
    for name, env in raw["environments"].items():
        host = lab.host_for(name)
        env["package_store"] = str(lab.packages_dir)
        for h in env["hosts"]:
            h["name"], h["winrm_url"] = host, lab.winrm_url(host)
        for check in env["smoke"]:
            base = lab.check_base(host, check["name"])
            check["url"] = base + "/" + check["url"].split("/", 3)[3]
    point_pairs_at_lab(raw, lab)
    point_dr_at_lab(raw, lab)
    # A blue/green watch of seconds, not the demo's 5 minutes: the browser run waits for it.
    raw["pairs"]["prod"]["watch"] = {"window_minutes": 0.1, "interval_s": 1}
    raw["paths"] = {
        "database": str(root / "var" / "mcms-bot.db"),
        "audit_dir": str(root / "logs" / "deploy" / "notifications"),
        "app_logs_dir": str(root / "logs" / "app"),
        "smoke_logs_dir": str(root / "artifacts" / "offline" / "logs"),
        "timeline_dir": str(root / "docs" / "logs"),
    }
    text = "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in raw.items()) + "\n"
    if tomllib.loads(text) != raw:
        raise AssertionError("the TOML writer lost something of the demo config")
    return text


def wait_http(url: str, proc: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s; see {log}")


@dataclass
class Stack:
    """The running bot and Playground on a lab; `stop()` ends every process it started."""

    lab: Lab
    root: Path
    playground_url: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def audit_dir(self) -> Path:
        return self.root / "logs" / "deploy" / "notifications"

    def audit(self) -> list[dict[str, Any]]:
        return [
            json.loads(line)
            for path in sorted(self.audit_dir.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]

    def spawn(self, argv: list[str], env: dict[str, str], name: str) -> Path:
        log = ARTIFACTS / f"{name}.log"
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=self.root,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: stop() reaches its children
                )
            )
        return log

    def stop(self) -> None:
        # In start order: the bot first, so it can deliver what it still has queued to the
        # Playground (its connector) instead of retrying against a closed port.
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_stack(lab: Lab, root: Path) -> Stack:
    """Start the bot on `lab`, then the Playground on the bot; the caller stops the Stack."""
    stack = Stack(lab, root)
    bot_port, playground_port = free_port(), free_port()
    config = root / "bot.toml"
    config.write_text(bot_config(lab, root, bot_port), encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MCMS_BOT_")  # local mode: no app id, no Teams credentials
    }
    env |= {
        "MCMS_LAB_WINRM_USER": DEMO_USERNAME,
        "MCMS_LAB_WINRM_PASSWORD": DEMO_PASSWORD,
        "MCMS_AUDIT_KEY": DEMO_AUDIT_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    try:
        argv = [sys.executable, "-m", "bot.cli", "run", "--config", str(config)]
        log = stack.spawn(argv, env, "bot")
        wait_http(f"http://127.0.0.1:{bot_port}/healthz", stack.procs[-1], 30, log)
        playground = BROWSER_DIR / "node_modules" / ".bin" / "agentsplayground"
        env |= {
            "TEAMSAPPTESTER_BROWSER": "none",
            "BOT_ENDPOINT": f"http://127.0.0.1:{bot_port}/api/messages",
            # Its Application Insights SDK's self-telemetry ("statsbeat") otherwise looks up
            # DNS and probes the Azure metadata address 169.254.169.254, telemetry off or not.
            "APPLICATION_INSIGHTS_NO_STATSBEAT": "true",
        }
        argv = [str(playground), "--disable-telemetry", "-p", str(playground_port), "-c", "msteams"]
        log = stack.spawn(argv, env, "playground")
        stack.playground_url = f"http://127.0.0.1:{playground_port}/"
        wait_http(stack.playground_url + "_debug/ping", stack.procs[-1], 60, log)
    except BaseException:
        stack.stop()
        raise
    return stack


def drive(stack: Stack, steps: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Run the scenario in chromium; the report of what the page showed, step by step."""
    scenario = stack.root / "scenario.json"
    scenario.write_text(json.dumps(steps), encoding="utf-8")
    argv = ["node", str(BROWSER_DIR / "drive.mjs"), "--url", stack.playground_url]
    argv += ["--scenario", str(scenario), "--out", str(out), "--chromium", str(CHROMIUM)]
    with (ARTIFACTS / "driver.log").open("wb") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, timeout=150, check=False)
    report_path = out / "report.json"
    if not report_path.exists():
        raise RuntimeError(f"the browser driver wrote no report; see {ARTIFACTS / 'driver.log'}")
    report: dict[str, Any] = json.loads(report_path.read_text(encoding="utf-8"))
    return report
