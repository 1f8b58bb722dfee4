"""What a machine needs for a config, said before the first call to a host: the pip extra a
WinRM transport needs (kerberos, credssp), and a host's CA bundle (`ca_trust_path`), which
WinRM over HTTPS then really uses — shown against the lab behind a loopback TLS proxy whose
certificate a private CA signed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web

from adapters.errors import HostUnreachable
from bot.cli import main
from bot.services import host_ops
from commands.config import Host, load_config
from lab.demo import DEMO_PASSWORD, DEMO_USERNAME

if TYPE_CHECKING:
    from lab.core import Lab
    from tests.tls_fixtures import PrivateCA

pytest_plugins = ["tests.lab_fixtures", "tests.tls_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "lab" / "demo-bot.toml"
LAB_HOST = """name = "lab-web01"
winrm_url = "http://127.0.0.1:15985/wsman"
transport = "basic"
allow_insecure_transport = true
"""


def demo_with_lab_host(tmp_path: Path, host_lines: str) -> Path:
    """The demo config with the Lab host's connection settings replaced by `host_lines`."""
    text = DEMO.read_text(encoding="utf-8")
    assert LAB_HOST in text
    path = tmp_path / "bot.toml"
    path.write_text(text.replace(LAB_HOST, f'name = "lab-web01"\n{host_lines}'), encoding="utf-8")
    return path


def mcms_bot(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    script = str(Path(sys.executable).parent / "mcms-bot")
    return subprocess.run(
        [script, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


@pytest.mark.parametrize(
    ("transport", "module"),
    [("kerberos", "kerberos"), ("credssp", "requests_credssp")],
)
def test_check_config_names_the_extra_a_transport_needs(
    tmp_path: Path, transport: str, module: str
) -> None:
    """Reproduction: a kerberos host was accepted, then failed at its first call at 3 a.m."""
    config = demo_with_lab_host(
        tmp_path, f'winrm_url = "http://127.0.0.1:15985/wsman"\ntransport = "{transport}"\n'
    )
    missing = mcms_bot("check-config", "--config", str(config))
    assert missing.returncode == 1
    assert (
        f"environments.Lab.hosts[0].transport: transport '{transport}' needs the "
        f"'{transport}' extra, which is not installed in this Python: "
        f"pip install 'mcms-bot[{transport}]'"
    ) in missing.stderr
    # With the module the extra brings importable (a stand-in here), the same file is fine.
    stand_in = tmp_path / "site"
    stand_in.mkdir()
    (stand_in / f"{module}.py").write_text("")
    present = mcms_bot("check-config", "--config", str(config), pythonpath=stand_in)
    assert present.returncode == 0, present.stderr
    assert "OK" in present.stdout


def test_every_winrm_host_is_checked_the_router_of_a_pair_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DEMO.read_text(encoding="utf-8")
    router = 'name = "arr-front01"\nwinrm_url = "http://127.0.0.1:15988/wsman"\ntransport = "basic"'
    assert router in text
    path = tmp_path / "bot.toml"
    path.write_text(text.replace(router, router.replace('"basic"', '"credssp"')))
    assert main(["check-config", "--config", str(path)]) == 1
    assert "pairs.prod.router.host.transport: transport 'credssp'" in capsys.readouterr().err


def test_run_refuses_to_start_without_the_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_with_lab_host(
        tmp_path, 'winrm_url = "https://127.0.0.1:15985/wsman"\ntransport = "credssp"\n'
    )
    assert main(["run", "--config", str(config)]) == 1
    assert "needs the 'credssp' extra" in capsys.readouterr().err


def test_a_missing_ca_bundle_is_named_before_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_with_lab_host(
        tmp_path,
        'winrm_url = "https://127.0.0.1:15985/wsman"\ntransport = "ntlm"\n'
        f'ca_trust_path = "{tmp_path / "corp-root.pem"}"\n',
    )
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "environments.Lab.hosts[0].ca_trust_path:" in err and "does not exist here" in err


@pytest.mark.parametrize(
    ("host_lines", "why"),
    [
        ('winrm_url = "http://h:5985/wsman"\nca_trust_path = "ca.pem"\n', "https://"),
        (
            'winrm_url = "https://h:5986/wsman"\nserver_cert_validation = "ignore"\n'
            'ca_trust_path = "ca.pem"\n',
            "server_cert_validation = 'validate'",
        ),
    ],
    ids=["plain-http", "validation-off"],
)
def test_ca_trust_path_only_where_a_certificate_is_checked(
    tmp_path: Path, host_lines: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_with_lab_host(tmp_path, host_lines + 'transport = "ntlm"\n')
    assert main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "environments.Lab.hosts[0]: ca_trust_path only applies to" in err and why in err


@pytest.fixture
async def winrm_over_https(lab: Lab, private_ca: PrivateCA) -> AsyncIterator[str]:
    """https://127.0.0.1:PORT/wsman: TLS terminated here, WS-Man passed on to the lab host."""
    upstream = lab.winrm_url(lab.host_for("Lab"))
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.post(upstream, data=await request.read(), headers=headers) as reply:
            body = await reply.read()
            kept = {k: v for k, v in reply.headers.items() if k.lower() == "content-type"}
            return web.Response(status=reply.status, body=body, headers=kept)

    app = web.Application()
    app.router.add_post("/wsman", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=private_ca.server_context()).start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/wsman"
    finally:
        await runner.cleanup()
        await session.close()


def https_host(url: str, **settings: Any) -> Host:
    return Host.model_validate(
        {
            "name": "lab-web01",
            "winrm_url": url,
            "transport": "basic",
            "username_env": "MCMS_LAB_WINRM_USER",
            "password_env": "MCMS_LAB_WINRM_PASSWORD",
            **settings,
        }
    )


async def test_winrm_over_https_trusts_the_hosts_ca_trust_path(
    winrm_over_https: str, private_ca: PrivateCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCMS_LAB_WINRM_USER", DEMO_USERNAME)
    monkeypatch.setenv("MCMS_LAB_WINRM_PASSWORD", DEMO_PASSWORD)
    trusted = host_ops(https_host(winrm_over_https, ca_trust_path=str(private_ca.ca_pem)))
    assert await trusted.echo("over TLS", timeout_s=10) == "over TLS"
    untrusted = host_ops(https_host(winrm_over_https))
    with pytest.raises(HostUnreachable, match="TLS handshake with WinRM on lab-web01 failed"):
        await untrusted.echo("over TLS", timeout_s=10)


def test_ca_trust_path_is_read_from_the_config_file(tmp_path: Path) -> None:
    bundle = tmp_path / "corp-root.pem"
    config = demo_with_lab_host(
        tmp_path,
        f'winrm_url = "https://127.0.0.1:15985/wsman"\ntransport = "ntlm"\n'
        f'ca_trust_path = "{bundle}"\n',
    )
    assert load_config(config).environments["Lab"].hosts[0].ca_trust_path == bundle
