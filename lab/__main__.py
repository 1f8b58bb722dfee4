"""`python -m lab --demo --root var/lab`: run the demo lab until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from lab.core import Lab
from lab.demo import DEMO_CONTROL_PORT, DEMO_EXTRA_PACKAGES, demo_hosts, demo_routers


def _describe(lab: Lab) -> str:
    lines = [f"MCMS lab: control API {lab.control_url} (see lab/README.md)"]
    for name in lab.hosts:
        spec = lab.specs[name]
        state = lab.state(name)
        sites = "  ".join(f"{site} {lab.http_base(name, site)}" for site in lab.sites(name))
        lines.append(
            f"  {spec.environment:<14} {name:<12} WinRM {lab.winrm_url(name)}  {sites}  "
            f"current {state['current_release']}  releases {', '.join(state['releases'])}"
        )
    for name in lab.routers:
        router = lab.router_specs[name]
        live = [s["address"] for s in lab.farm(name)["servers"] if s["state"] == "Available"]
        lines.append(
            f"  pair {router.pair:<9} {name:<12} WinRM {lab.winrm_url(name)}  "
            f"public {lab.public_url(name)}  ARR farm {router.farm}: "
            f"{', '.join(router.servers)} (online: {', '.join(live) or 'none'})"
        )
    spec = next(iter(lab.specs.values()))
    sites = ", ".join(f"{s.name} (pool {s.app_pool}, folder {s.folder or '.'})" for s in spec.sites)
    services = ", ".join(
        f"{s.name} ({s.executable or 'outside the release'})" for s in spec.services
    )
    lines += [
        f"  credentials {spec.username} / {spec.password} (transport basic; demo only)",
        f"  sites {sites}; services {services}; releases root {spec.releases_root}",
        f"  packages {lab.packages_dir} (hosts see it as {spec.package_dir})",
        "Ctrl-C or SIGTERM stops it.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    parser.add_argument("--demo", action="store_true", help="serve the demo topology")
    parser.add_argument("--root", type=Path, default=Path("var/lab"), help="working directory")
    args = parser.parse_args(argv)
    if not args.demo:
        parser.error("only --demo is available: tests build their own Lab in Python")

    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lab = Lab(
        demo_hosts(fixed_ports=True),
        args.root,
        control_port=DEMO_CONTROL_PORT,
        package_versions=DEMO_EXTRA_PACKAGES,
        routers=demo_routers(fixed_ports=True),
    )
    try:
        lab.start()
    except OSError as exc:
        print(f"cannot start the lab: {exc} (is another lab running?)", file=sys.stderr)
        return 1
    try:
        print(_describe(lab), flush=True)
        stop.wait()
    finally:
        lab.stop()
    print("lab stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
