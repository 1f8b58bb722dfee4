"""The config of one environment: hosts, components, releases, smoke, approval, watch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    Field,
    field_validator,
    model_validator,
)

from commands.config.base import (
    OBJECT_ID_PATTERN,
    EnvVarName,
    _check_env_var,
    _check_name,
    _Strict,
)
from commands.config.components import (
    Components,
    Iis,
    Service,
    Site,
    Worker,
    check_components,
)
from commands.config.dr import DrTests
from commands.config.scripts import ScriptStep


class SmokeCheck(_Strict):
    """One HTTP probe of the playbook's run-smoke.ps1 (Health 200, Swagger 200, Kerberos 401)."""

    name: str
    url: AnyHttpUrl
    expect: list[int] = Field(default_factory=lambda: [200], min_length=1)
    timeout_s: float = Field(default=5.0, gt=0, le=120)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "check name")

    @field_validator("expect")
    @classmethod
    def _statuses(cls, v: list[int]) -> list[int]:
        for status in v:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status (100-599)")
        return v


class Host(_Strict):
    """A Windows server reached over WinRM; credentials come from the named env vars."""

    name: str
    winrm_url: AnyHttpUrl
    transport: Literal["basic", "ntlm", "kerberos", "credssp", "ssl"] = "ntlm"
    username_env: EnvVarName
    password_env: EnvVarName
    allow_insecure_transport: bool = False
    server_cert_validation: Literal["validate", "ignore"] = "validate"
    # A PEM bundle (or a directory of hashed certificates) holding the CA that signed the
    # host's WinRM HTTPS certificate, e.g. an internal AD CS root; default: the CA bundle
    # of requests.
    ca_trust_path: Path | None = None
    operation_timeout_s: float = Field(default=10.0, gt=0, le=60)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_name(v, "host name")

    @field_validator("username_env", "password_env")
    @classmethod
    def _env(cls, v: str) -> str:
        return _check_env_var(v)

    @model_validator(mode="after")
    def _transport_is_safe(self) -> Host:
        plain_http = self.winrm_url.scheme == "http"
        # NTLM/Kerberos/CredSSP encrypt the message body even over http; basic does not.
        if plain_http and self.transport in ("basic", "ssl") and not self.allow_insecure_transport:
            raise ValueError(
                f"transport {self.transport!r} over plain http sends credentials in clear text; "
                "use https, ntlm or kerberos, or set allow_insecure_transport = true (lab only)"
            )
        if self.ca_trust_path is not None and (
            plain_http or self.server_cert_validation == "ignore"
        ):
            raise ValueError(
                "ca_trust_path only applies to an https:// winrm_url with "
                "server_cert_validation = 'validate'"
            )
        return self


class Approval(_Strict):
    """Who must agree before a rollback/deploy of this environment runs.

    required = false: the request is approved by policy and runs at once (Lab-like
    environments); still audited. required_count: distinct approvers, none the requester
    (the two-person rule). break_glass: a holder of the break_glass role may approve alone,
    with a reason; the approval is announced in the environment's alert conversations.
    approver_groups: Entra group object ids whose members approve, besides people with the
    approver role.
    """

    required: bool = True
    self_approval: bool = False
    ttl_minutes: int = Field(default=15, ge=1, le=24 * 60)
    required_count: int = Field(default=1, ge=1, le=5)
    break_glass: bool = False
    approver_groups: list[Annotated[str, Field(pattern=OBJECT_ID_PATTERN)]] = Field(
        default_factory=list, max_length=20
    )

    @model_validator(mode="after")
    def _coherent(self) -> Approval:
        if not self.required and (self.required_count > 1 or self.break_glass):
            raise ValueError(
                "required = false runs requests without approval: required_count and "
                "break_glass mean nothing there (remove them, or set required = true)"
            )
        if self.required_count > 1 and self.self_approval:
            raise ValueError(
                f"required_count = {self.required_count} asks for distinct approvers other than "
                "the requester: set self_approval = false"
            )
        return self


class QueueDepthCheck(_Strict):
    """An HTTP GET whose JSON answer holds the Worker's queue depth (a number) at `json_path`."""

    url: AnyHttpUrl
    json_path: str = Field(default="depth", pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
    timeout_s: float = Field(default=5.0, gt=0, le=60)


class Watch(_Strict):
    """The watcher's schedule for one environment (playbook §7: alert after 2 failures)."""

    enabled: bool = True
    interval_s: float = Field(default=60.0, ge=5)
    failure_threshold: int = Field(default=2, ge=1)
    reminder_minutes: int = Field(default=30, ge=1)
    # The app pool is read over WinRM, which costs the host a PowerShell process: slower
    # than the HTTP checks.
    app_pool_interval_s: float = Field(default=300.0, ge=5)
    queue_depth: QueueDepthCheck | None = None


class Timeouts(_Strict):
    """Deadlines of the run's steps, in seconds, each host its own; a step past its deadline
    fails the run."""

    # Hashes the package on the host when the release folder is not kept: give it time.
    preflight_s: float = Field(default=120, gt=0, le=1800)
    stop_s: float = Field(default=90, gt=0, le=1800)
    start_s: float = Field(default=120, gt=0, le=1800)
    deploy_s: float = Field(default=600, gt=0, le=3600)
    smoke_s: float = Field(default=180, gt=0, le=3600)
    precheck_s: float = Field(default=30, gt=0, le=600)
    # Copying a package to a host's share and hashing it there.
    sync_s: float = Field(default=600, gt=0, le=3600)
    # Each restore step (switch back, states back, verify, smoke).
    restore_s: float = Field(default=180, gt=0, le=3600)


# What the host scripts accept (adapters/winrm/scripts.py): releases live on a local drive;
# the package store may be a local folder or a share (`$` only ends a share name: D$).
_DRIVE_DIR = re.compile(r"[A-Za-z]:\\[A-Za-z0-9 ._\\-]*")
_SHARE_DIR = re.compile(r"\\\\[A-Za-z0-9._-]+\\[A-Za-z0-9._-]+\$?(\\[A-Za-z0-9 ._-]+)*\\?")


def _check_windows_dir(v: str, *, share_ok: bool) -> str:
    ok = _DRIVE_DIR.fullmatch(v) or (share_ok and _SHARE_DIR.fullmatch(v))
    if not ok or ".." in v.split("\\"):
        shapes = "D:\\MCMS\\releases" + (" or \\\\server\\share\\dir" if share_ok else "")
        raise ValueError(f"{v!r} must be an absolute Windows path like {shapes} (ASCII, no '..')")
    return v.rstrip("\\")


class Environment(_Strict):
    description: str = ""
    hosts: list[Host] = Field(min_length=1)
    # The release's components; `iis` + `worker` is the older one-site/one-service shape.
    sites: list[Site] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    iis: Iis | None = None
    worker: Worker | None = None
    releases_root: str = Field(min_length=3)
    keep_releases: int = Field(default=3, ge=2, le=20)
    # Where the bot verifies packages (MCMS_Setup_VERSION.zip + .sha256)...
    package_store: Path
    # ...and the same store as the hosts see it (a share or a synced local folder).
    host_package_dir: str = "D:\\MCMS\\packages"
    # The package store as the hosts reach it to copy from (the Shared Drive, a UNC share):
    # when set, every run first syncs its package to the hosts whose folder lacks it.
    package_source_dir: str | None = None
    smoke: list[SmokeCheck] = Field(min_length=1)
    approval: Approval = Approval()
    watch: Watch = Watch()
    timeouts: Timeouts = Timeouts()
    # The DR test matrix (`check ENVIRONMENT`): DR-SMOKE always, the suites when configured.
    dr: DrTests | None = None
    # DR tests a rollback/deploy runs after its smoke (e.g. ["smoke", "e2e"]): a failing gate
    # fails the run, which then restores per on_failure. Each suite needs its runner in `dr`.
    gates: list[Literal["smoke", "axe", "e2e", "zap"]] = Field(default_factory=list)
    # The team's own scripts (notify-deploy.ps1, Deploy-CamService.ps1...) as plan steps.
    scripts: list[ScriptStep] = Field(default_factory=list, max_length=20)
    # A run that fails or is cancelled after it changed something: "restore" puts every
    # component back as it was (and verifies it); "stop" leaves the hosts as they are.
    on_failure: Literal["restore", "stop"] = "restore"
    # Preflight wants this much free disk on the releases volume beyond the expanded package.
    disk_margin_mb: int = Field(default=1024, ge=0, le=1024 * 1024)

    @field_validator("releases_root")
    @classmethod
    def _root(cls, v: str) -> str:
        return _check_windows_dir(v, share_ok=False)

    @field_validator("host_package_dir")
    @classmethod
    def _package_dir(cls, v: str) -> str:
        return _check_windows_dir(v, share_ok=True)

    @field_validator("package_source_dir")
    @classmethod
    def _source_dir(cls, v: str | None) -> str | None:
        return None if v is None else _check_windows_dir(v, share_ok=True)

    @property
    def components(self) -> Components:
        """The sites and services a run switches (the older shape turned into one of each)."""
        if self.iis is not None or self.worker is not None:
            sites = [] if self.iis is None else [
                Site(name=self.iis.site, app_pool=self.iis.app_pool,
                     pool_action=self.iis.pool_action)
            ]  # fmt: skip
            services = [] if self.worker is None else [Service(name=self.worker.service)]
            return Components(tuple(sites), tuple(services))
        return Components(tuple(self.sites), tuple(self.services))

    @model_validator(mode="after")
    def _unique(self) -> Environment:
        legacy = self.iis is not None or self.worker is not None
        if legacy and (self.sites or self.services):
            raise ValueError(
                "give the components either as iis + worker (one of each) or as sites + "
                "services, not both"
            )
        if legacy and (self.iis is None or self.worker is None):
            raise ValueError("iis and worker go together (or use sites + services)")
        repeated = sorted({g for g in self.gates if self.gates.count(g) > 1})
        if repeated:
            raise ValueError(f"gates lists {', '.join(repeated)} more than once")
        for gate in self.gates:
            if gate != "smoke" and (self.dr is None or self.dr.runner(gate) is None):
                raise ValueError(
                    f'gates names "{gate}" but no runner is configured: add [dr.{gate}] to '
                    "this environment, or remove it from gates"
                )
        parts = self.components
        check_components(list(parts.sites), list(parts.services))
        for what, names in (
            ("host", [h.name for h in self.hosts]),
            ("smoke check", [c.name for c in self.smoke]),
            ("script step", [s.name for s in self.scripts]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} name(s): {', '.join(dupes)}")
        return self
