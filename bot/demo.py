"""`make run`: the simulated lab, the bot on the demo config, and (with Node) the Playground.

Every child runs in its own process group; Ctrl-C or SIGTERM stops all of them, and so does
any one of them dying — a half-started demo would only mislead.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "lab" / "demo-bot.toml"
LAB_CONTROL = "http://127.0.0.1:15900/state"
BOT_HEALTH = "http://127.0.0.1:3978/healthz"
PLAYGROUND_VERSION = "0.2.28"
PLAYGROUND_PORT = 56150
PLAYGROUND_DIR = ROOT / "var" / "playground"
DR_SUITES_DIR = ROOT / "lab" / "dr-suites"
CHROMIUM = Path("/usr/bin/chromium")
DEMO_AUDIT_KEY = "demo-audit-key-not-secret-0123456789abcdef"
# What a second terminal sources to use the break-glass CLI on the demo (README).
DEMO_ENV_FILE = ROOT / "var" / "demo.env"
DEMO_ENV_NAMES = ("MCMS_LAB_WINRM_USER", "MCMS_LAB_WINRM_PASSWORD", "MCMS_AUDIT_KEY")


def write_demo_env(env: dict[str, str]) -> Path:
    """var/demo.env: the demo's variables, its config and the venv's bin on PATH, so
    `. var/demo.env` then `mcms-bot rollback Lab --reason ...` works in another terminal."""
    lines = [f"export {name}={shlex.quote(env[name])}" for name in DEMO_ENV_NAMES]
    lines.append(f"export MCMS_BOT_CONFIG={shlex.quote(str(DEMO_CONFIG))}")
    lines.append(f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"')
    DEMO_ENV_FILE.parent.mkdir(parents=True, exist_ok=True)
    DEMO_ENV_FILE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return DEMO_ENV_FILE


def _wait_http(url: str, seconds: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")
    return subprocess.Popen(  # noqa: S603 - fixed argv built here
        args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in reversed(procs):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _playground_bin() -> Path | None:
    """Install the pinned Agents Playground into var/ once; None when Node is absent."""
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        return None
    binary = PLAYGROUND_DIR / "node_modules" / ".bin" / "agentsplayground"
    stamp = PLAYGROUND_DIR / f".installed-{PLAYGROUND_VERSION}"
    if not (binary.exists() and stamp.exists()):
        PLAYGROUND_DIR.mkdir(parents=True, exist_ok=True)
        print(f"Installing Microsoft 365 Agents Playground {PLAYGROUND_VERSION} (npm)...")
        done = subprocess.run(  # noqa: S603
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(PLAYGROUND_DIR),
                f"@microsoft/m365agentsplayground@{PLAYGROUND_VERSION}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not binary.exists():
            print(f"Could not install the Playground (npm said: {done.stderr.strip()[-300:]}).")
            return None
        stamp.touch()
    return binary


def _install_dr_suites() -> str:
    """`npm ci` the lab's DR suites (`check Lab`) from their lock file; what to tell the user."""
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        return "(Node.js not found: `check Lab` runs DR-SMOKE; DR-AXE and DR-E2E need node)"
    installed = DR_SUITES_DIR / "node_modules" / ".package-lock.json"
    lock = DR_SUITES_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        print("Installing the lab's DR suites (npm ci in lab/dr-suites)...")
        done = subprocess.run(  # noqa: S603
            [
                npm,
                "ci",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(DR_SUITES_DIR),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return f"DR suites not installed (npm said: {done.stderr.strip()[-300:]})"
    if not CHROMIUM.exists():
        return f"DR suites installed; DR-AXE needs {CHROMIUM} (apt-get install chromium)"
    return "DR suites      lab/dr-suites (axe-core in chromium, node's test runner): check Lab"


def main() -> int:
    # The demo config says local mode, which refuses to start beside Teams credentials.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCMS_BOT_APP_")}
    # The lab's demo credentials; a real deployment sets its own in the service environment.
    env.setdefault("MCMS_LAB_WINRM_USER", "lab-admin")
    env.setdefault("MCMS_LAB_WINRM_PASSWORD", "lab-password")
    # The demo's audit key (a real deployment keeps its own secret one): `audit verify
    # --config lab/demo-bot.toml` needs the same value in the environment.
    env.setdefault("MCMS_AUDIT_KEY", DEMO_AUDIT_KEY)
    env["PYTHONUNBUFFERED"] = "1"
    write_demo_env(env)
    logs = ROOT / "logs"
    procs: list[subprocess.Popen[bytes]] = []
    labels: dict[int, str] = {}

    def on_term(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    dr_note = _install_dr_suites()
    try:
        lab = _start(
            [sys.executable, "-m", "lab", "--demo", "--root", "var/lab"], env, logs / "lab.log"
        )
        procs.append(lab)
        labels[lab.pid] = "the lab"
        if not _wait_http(LAB_CONTROL, 30, lab):
            print("The simulated lab did not start; see logs/lab.log.")
            return 1
        bot = _start(
            [sys.executable, "-m", "bot.cli", "run", "--config", str(DEMO_CONFIG)],
            env,
            logs / "bot-console.log",
        )
        procs.append(bot)
        labels[bot.pid] = "the bot"
        if not _wait_http(BOT_HEALTH, 30, bot):
            print("The bot did not start; see logs/bot-console.log and logs/app/bot.jsonl.")
            return 1
        print("\nMCMS ops bot is running (local mode: no Teams authentication, 127.0.0.1 only).")
        print("  bot endpoint   http://127.0.0.1:3978/api/messages")
        print(
            "  lab            Lab / InternalStage / InternalProd simulated; faults: lab/README.md"
        )
        print(
            "  pair prod      InternalProd (live at start) / InternalStage behind the lab's "
            "ARR router, public URL http://127.0.0.1:18080"
        )
        playground = _playground_bin()
        if playground:
            pg_env = dict(
                env,
                TEAMSAPPTESTER_BROWSER="none",
                BOT_ENDPOINT="http://127.0.0.1:3978/api/messages",
                # Else its telemetry SDK probes DNS and 169.254.169.254 even with telemetry off.
                APPLICATION_INSIGHTS_NO_STATSBEAT="true",
            )
            pg = _start(
                [
                    str(playground),
                    "--disable-telemetry",
                    "-p",
                    str(PLAYGROUND_PORT),
                    "-c",
                    "msteams",
                ],
                pg_env,
                logs / "playground.log",
            )
            procs.append(pg)
            labels[pg.pid] = "the Playground"
            if _wait_http(f"http://127.0.0.1:{PLAYGROUND_PORT}/_debug/ping", 60, pg):
                print(
                    f"  Playground     http://127.0.0.1:{PLAYGROUND_PORT}/  (open it in a browser)"
                )
            else:
                print("  Playground did not start; see logs/playground.log")
        else:
            print("  (Node.js not found: install it to get Microsoft 365 Agents Playground)")
        print(f"  {dr_note}")
        print(
            "\nTry: help · status · smoke Lab · check Lab · rollback Lab (then Approve on the card)"
        )
        print(
            "Teams down? In another terminal, here: `. var/demo.env` then "
            '`mcms-bot rollback Lab --reason "drill: Teams is down"` (break glass, as Alex).'
        )
        print("Logs: logs/app/bot.jsonl, audit: logs/deploy/notifications/. Ctrl-C stops all.\n")
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    print(
                        f"{labels[proc.pid]} exited ({proc.returncode}); "
                        "stopping everything. See logs/."
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping...")
        return 0
    finally:
        _stop(procs)


if __name__ == "__main__":
    sys.exit(main())
