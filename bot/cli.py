"""`mcms-bot` — run the bot, validate a config, verify the audit.

mcms-bot [run] [--config FILE]        serve /api/messages (default command)
mcms-bot check-config FILE             exit 0, or 1 listing every problem by key
mcms-bot audit verify [--dir DIR | --config FILE]
mcms-bot manifest --app-id GUID [--out FILE.zip]   the Teams app package to upload
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from commands.config import Config, ConfigError, load_config, secret

DEFAULT_CONFIG_ENV = "MCMS_BOT_CONFIG"


def _config_path(given: str | None) -> str:
    path = given or os.environ.get(DEFAULT_CONFIG_ENV)
    if not path:
        raise SystemExit(
            f"no config file: pass --config FILE or set {DEFAULT_CONFIG_ENV} "
            "(the demo's is lab/demo-bot.toml; `make run` uses it)"
        )
    return path


def check_config(path: str) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    hosts = sum(len(e.hosts) for e in config.environments.values())
    print(
        f"{path}: OK — {len(config.environments)} environment(s) "
        f"({', '.join(config.environments)}), {hosts} host(s), {len(config.people)} person(s), "
        f"time zone {config.timezone}"
    )
    for name, pair in config.pairs.items():
        router = pair.router
        print(
            f"  pair {name}: {' / '.join(pair.slots)} behind {router.host.name} "
            f"(ARR farm {router.farm}, {router.public_url}); the live slot is read from it"
        )
    missing = [name for name in config.secret_env_names() if secret(name) is None]
    if missing:
        # Not an error: the file may be checked on a machine that does not run the bot.
        print(f"note: not set in this environment: {', '.join(missing)}")
    return 0


def audit_verify(directory: Path) -> int:
    from adapters.audit import main_verify

    return main_verify(directory)


def _audit_dir(args: argparse.Namespace) -> Path:
    if args.dir:
        return Path(args.dir)
    try:
        config: Config = load_config(_config_path(args.config))
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc
    return config.paths.audit_dir


def build_manifest(args: argparse.Namespace) -> int:
    from bot.teams.manifest import main_manifest

    directory = Path(args.manifest_dir) if args.manifest_dir else None
    return main_manifest(args.app_id, Path(args.out), args.app_version, directory)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcms-bot", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    run_p = sub.add_parser("run", help="serve the bot (default)")
    run_p.add_argument("--config", help=f"config file (default: ${DEFAULT_CONFIG_ENV})")
    check_p = sub.add_parser("check-config", help="validate a config file")
    check_p.add_argument("file")
    audit_p = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit_p.add_subparsers(dest="audit_command", required=True)
    verify_p = audit_sub.add_parser("verify", help="check the hash chain of the JSONL audit")
    verify_p.add_argument("--dir", help="audit directory (default: paths.audit_dir of the config)")
    verify_p.add_argument("--config", help=f"config file (default: ${DEFAULT_CONFIG_ENV})")
    manifest_p = sub.add_parser("manifest", help="build the Teams app package (zip)")
    manifest_p.add_argument("--app-id", required=True, help="the Azure Bot's Microsoft App ID")
    manifest_p.add_argument("--out", default="build/mcms-bot-teams-app.zip", help="zip to write")
    manifest_p.add_argument("--app-version", help="app version (default: the package's)")
    manifest_p.add_argument("--manifest-dir", help="template + icons (default: manifest/)")

    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "audit":
        return audit_verify(_audit_dir(args))
    if args.command == "manifest":
        return build_manifest(args)
    from bot.server import serve

    return serve(_config_path(getattr(args, "config", None)))


if __name__ == "__main__":
    sys.exit(main())
