"""The demo topology: one host per environment (Lab, InternalStage, InternalProd), and the
ARR router in front of the slot pair `prod` (InternalProd live, InternalStage standby).

Each host runs the playbook's release components: the MCMS Portal site (Health, and the
login and releases pages), the MCMS API site (Swagger, Kerberos), each in its own folder of
the release with its own app pool, and the Worker service, whose executable lives in the
release too. Fixed loopback ports for `python -m lab --demo` (written down in
lab/README.md, so a demo bot config can point at them); tests use the same topology on
ephemeral ports.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Final

from lab.core import Lab
from lab.model import PORTAL_PAGES, LabHostSpec, LabService, LabSite
from lab.router import LabRouterSpec

DEMO_CONTROL_PORT: Final = 15900
DEMO_USERNAME: Final = "lab-admin"
DEMO_PASSWORD: Final = "lab-password"  # noqa: S105  # demo only, printed at start

PORTAL: Final = "MCMS.Portal"
API: Final = "MCMS.Api"
WORKER: Final = "MCMS.Worker"
WORKER_EXE: Final = "Worker\\MCMS.Worker.exe"


def _spec(
    name: str, environment: str, releases: tuple[str, ...], winrm: int, portal: int, api: int
) -> LabHostSpec:
    return LabHostSpec(
        name,
        environment,
        releases,
        releases[-1],
        sites=(
            LabSite(PORTAL, PORTAL, "Portal", ("health", *PORTAL_PAGES), http_port=portal),
            LabSite(API, API, "Api", ("swagger", "kerberos"), http_port=api),
        ),
        services=(LabService(WORKER, WORKER_EXE, "--service"),),
        winrm_port=winrm,
    )


_DEMO: Final = (
    # Stage runs ahead of prod; each keeps its current release and two older ones.
    _spec("lab-web01", "Lab", ("1.4.0", "1.4.1", "1.4.2"), 15985, 18081, 18091),
    _spec("stage-web01", "InternalStage", ("1.3.9", "1.4.0", "1.4.1"), 15986, 18082, 18092),
    _spec("prod-web01", "InternalProd", ("1.3.8", "1.3.9", "1.4.0"), 15987, 18083, 18093),
)
# In the package store but deployed nowhere yet: something to deploy in a demo.
DEMO_EXTRA_PACKAGES: Final = ("1.4.3",)


def demo_hosts(*, fixed_ports: bool = True) -> list[LabHostSpec]:
    """The three demo hosts; with fixed_ports=False every port is ephemeral (for tests)."""
    if fixed_ports:
        return list(_DEMO)
    return [
        replace(
            spec,
            winrm_port=0,
            sites=tuple(replace(site, http_port=0) for site in spec.sites),
        )
        for spec in _DEMO
    ]


# The slot pair `prod`: production traffic reaches InternalProd or InternalStage through
# this router's public URL; InternalProd is live at start.
_DEMO_ROUTER: Final = LabRouterSpec(
    "arr-front01",
    servers=("prod-web01", "stage-web01"),
    online=("prod-web01",),
    farm="MCMS",
    pair="prod",
    winrm_port=15988,
    public_port=18080,
)


def demo_routers(*, fixed_ports: bool = True) -> list[LabRouterSpec]:
    """The demo's router; with fixed_ports=False its ports are ephemeral (for tests)."""
    if fixed_ports:
        return [_DEMO_ROUTER]
    return [replace(_DEMO_ROUTER, winrm_port=0, public_port=0)]


def demo_lab(root: Path) -> Lab:
    """The demo topology on ephemeral loopback ports, files under `root` (tests, benches):
    use it as a context manager (`with demo_lab(root) as lab:`)."""
    return Lab(
        demo_hosts(fixed_ports=False),
        root,
        package_versions=DEMO_EXTRA_PACKAGES,
        routers=demo_routers(fixed_ports=False),
    )
