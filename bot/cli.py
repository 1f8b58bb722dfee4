"""`mcms-bot` — run the bot, operate without Teams (break glass), validate a config, verify
the audit, build the Teams app package.

mcms-bot [run] [--config FILE] [--log-level LEVEL]   serve /api/messages (default command)
mcms-bot status|smoke|plan|rollback|deploy|cancel|history|lock|unlock|run RUN-ID ...
                                                     the operator commands, as in chat (below)
mcms-bot check-config [--config FILE]                exit 0, or 1 listing every problem by key
mcms-bot audit verify [--dir DIR | --config FILE] [--against PUBLISHED] [--key-env NAME]
                                                     exit 0 intact, 1 damaged, 2 cannot check
mcms-bot manifest [--app-id GUID] [--out FILE.zip]   the Teams app package to upload
mcms-bot --version

Every subcommand takes `--config FILE` the same way (before or after its name), and falls
back to $MCMS_BOT_CONFIG. Exit status 2 always means a usage or I/O error: nothing was checked.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.version import installed_version
from commands.config import Config, ConfigError, load_config, secret

DEFAULT_CONFIG_ENV = "MCMS_BOT_CONFIG"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
USAGE_ERROR = 2
DEFAULT_AUDIT_KEY_ENV = "MCMS_AUDIT_KEY"


class UsageError(Exception):
    """The command line cannot be acted on; exit status 2 with this message."""


def config_path(given: str | None) -> str:
    """--config, else $MCMS_BOT_CONFIG; UsageError when neither is set."""
    path = given or os.environ.get(DEFAULT_CONFIG_ENV)
    if not path:
        raise UsageError(
            f"no config file: pass --config FILE or set {DEFAULT_CONFIG_ENV} "
            "(the demo's is lab/demo-bot.toml; `make run` uses it)"
        )
    return path


def check_config(path: str) -> int:
    from bot.preflight import machine_problems

    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    lacking = machine_problems(config)
    if lacking:
        print(ConfigError(path, tuple(lacking)), file=sys.stderr)
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


def audit_verify(args: argparse.Namespace) -> int:
    from adapters.audit import main_verify

    if args.dir and not args.config:
        directory, key_envs = Path(args.dir), [args.key_env or DEFAULT_AUDIT_KEY_ENV]
    else:
        try:
            config: Config = load_config(config_path(args.config))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return USAGE_ERROR
        directory = Path(args.dir) if args.dir else config.paths.audit_dir
        # The current key first; rotated keys keep their lines verifiable.
        key_envs = [args.key_env or config.audit.key_env, *config.audit.previous_key_envs]
    if secret(key_envs[0]) is None:
        print(
            f"audit verify needs the audit key: set {key_envs[0]} to the value the bot writes "
            "with (the chain is HMAC-keyed; without the key nothing can be proven)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    keys = [v.encode("utf-8") for name in key_envs if (v := secret(name)) is not None]
    against = Path(args.against) if args.against else None
    return main_verify(directory, keys, against)


def build_manifest(args: argparse.Namespace) -> int:
    from bot.teams.manifest import main_manifest

    app_id = args.app_id if args.app_id is not None else _app_id_from_config(args.config)
    directory = Path(args.manifest_dir) if args.manifest_dir else None
    return main_manifest(app_id, Path(args.out), args.app_version, directory)


def operate(args: argparse.Namespace) -> int:
    """An operator command (bot/terminal/): 2 when the config cannot be read."""
    from bot.terminal.main import main_operator

    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return USAGE_ERROR
    return main_operator(config, args)


def _app_id_from_config(given: str | None) -> str:
    """The Microsoft App ID from the environment variable the config names (teams.app_id_env)."""
    if not (given or os.environ.get(DEFAULT_CONFIG_ENV)):
        raise UsageError("pass --app-id GUID (the Azure Bot's Microsoft App ID), or --config FILE")
    try:
        config = load_config(config_path(given))
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    app_id = secret(config.teams.app_id_env)
    if app_id is None:
        raise UsageError(f"pass --app-id GUID, or set {config.teams.app_id_env} (teams.app_id_env)")
    return app_id


OPERATOR_COMMANDS = (
    "status",
    "smoke",
    "plan",
    "rollback",
    "deploy",
    "cancel",
    "history",
    "lock",
    "unlock",
)
OPERATOR_EPILOG = """\
operator commands (the break-glass CLI): the same commands, plans, locks, executor, audit
and timeline as chat, on the bot's host, whether the bot runs or not. You act as the person
whose [[people]] os_user is your OS login. rollback/deploy are approved by break glass only:
--reason is required, you need the break_glass role, the environment must allow break
glass; it is marked in the audit and timeline and announced in the alert conversations
when the bot reaches Teams. A freeze (`lock`) does not stop them — they are break glass —
but they say they overrode it. lock/unlock need the approver role. Ctrl-C during a run asks
whether to cancel it (a cancel puts back what the run changed); the command always waits
for the run's end. Ctrl-C before the run exists (preflight, plan, the approval question)
stops the command: nothing was started, so there is nothing to cancel (exit status 130).

exit status (operator commands):
  0  succeeded (or answered)
  1  the run failed or was cancelled (restored or not: the output says which); smoke failed
  2  usage or config error: nothing was asked
  3  refused: environment busy (locked by another run), role or break-glass rule, the plan
     changed before the run (void), declined at the prompt; lock of a frozen environment,
     unlock of one that is not
  130  interrupted (Ctrl-C) before anything was started
"""


def _operator_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument(
        "--json", action="store_true", help="one JSON object per line (the last: the result)"
    )
    parents = [common, shown]
    status_p = sub.add_parser(
        "status", parents=parents, help="every component of every host, drift, last smoke, runs"
    )
    status_p.add_argument("environment", nargs="?", metavar="ENV")
    smoke_p = sub.add_parser("smoke", parents=parents, help="run the smoke checks now")
    smoke_p.add_argument("environment", metavar="ENV")
    plan_p = sub.add_parser(
        "plan", parents=parents, help="the exact plan a rollback/deploy would ask to approve"
    )
    plan_p.add_argument("kind", choices=("rollback", "deploy"))
    plan_p.add_argument("environment", metavar="ENV")
    plan_p.add_argument("version", nargs="?", metavar="VERSION")
    plan_p.add_argument("--exclude", action="append", metavar="HOST", help="leave HOST out")
    for kind, summary in (
        ("rollback", "roll back to the previous stable version (or VERSION), by break glass"),
        ("deploy", "deploy VERSION from the package store, by break glass"),
    ):
        change_p = sub.add_parser(kind, parents=parents, help=summary)
        change_p.add_argument("environment", metavar="ENV")
        change_p.add_argument(
            "version", nargs="?" if kind == "rollback" else None, metavar="VERSION"
        )
        change_p.add_argument(
            "--reason",
            required=True,
            help="why (audited, announced; at least 10 characters)",
        )
        change_p.add_argument("--exclude", action="append", metavar="HOST", help="leave HOST out")
        change_p.add_argument(
            "--yes", action="store_true", help="do not ask before approving (asked on a terminal)"
        )
    cancel_p = sub.add_parser(
        "cancel", parents=parents, help="stop a run at its next step and restore it"
    )
    cancel_p.add_argument("run_id", metavar="RUN-ID")
    lock_p = sub.add_parser(
        "lock", parents=parents, help="freeze ENV: no rollback/deploy but by break glass"
    )
    lock_p.add_argument("environment", metavar="ENV")
    lock_p.add_argument(
        "--reason", required=True, help="why (audited, shown on every card; 10+ characters)"
    )
    unlock_p = sub.add_parser("unlock", parents=parents, help="lift the freeze of ENV")
    unlock_p.add_argument("environment", metavar="ENV")
    history_p = sub.add_parser(
        "history", parents=parents, help="the last N runs and the deployment history"
    )
    history_p.add_argument("environment", metavar="ENV")
    history_p.add_argument("count", nargs="?", type=int, metavar="N")


def _parser() -> argparse.ArgumentParser:
    # One --config for every subcommand, accepted before or after its name: the subcommands'
    # copy defaults to SUPPRESS so it never hides a value given before the name.
    config_help = f"config file (default: ${DEFAULT_CONFIG_ENV})"
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)

    parser = argparse.ArgumentParser(
        prog="mcms-bot",
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=OPERATOR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shown = installed_version() or "(not installed)"
    parser.add_argument("--version", action="version", version=f"mcms-bot {shown}")
    parser.add_argument("--config", default=None, help=config_help)
    sub = parser.add_subparsers(dest="command")
    run_p = sub.add_parser(
        "run",
        parents=[common],
        help="serve the bot (default); `run RUN-ID`: a run's card, followed until it ends",
    )
    run_p.add_argument("run_id", nargs="?", metavar="RUN-ID")
    run_p.add_argument("--json", action="store_true", help="with RUN-ID: JSON lines")
    run_p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level (default: logging.level of the config, INFO)",
    )
    _operator_parsers(sub, common)
    sub.add_parser("check-config", parents=[common], help="validate a config file")
    audit_p = sub.add_parser("audit", parents=[common], help="audit log tools")
    audit_sub = audit_p.add_subparsers(dest="audit_command", required=True)
    verify_p = audit_sub.add_parser(
        "verify", parents=[common], help="check the hash chain of the JSONL audit"
    )
    verify_p.add_argument("--dir", help="audit directory (default: paths.audit_dir of the config)")
    verify_p.add_argument(
        "--against",
        metavar="FILE",
        help="a file holding published heads (`seq N hash H` lines: the app log, a saved "
        "Teams thread): each must still be in the log",
    )
    verify_p.add_argument(
        "--key-env",
        help=f"variable holding the audit key (default: audit.key_env, or {DEFAULT_AUDIT_KEY_ENV})",
    )
    manifest_p = sub.add_parser(
        "manifest", parents=[common], help="build the Teams app package (zip)"
    )
    manifest_p.add_argument(
        "--app-id",
        help="the Azure Bot's Microsoft App ID (default: teams.app_id_env of the config)",
    )
    manifest_p.add_argument("--out", default="build/mcms-bot-teams-app.zip", help="zip to write")
    manifest_p.add_argument("--app-version", help="app version (default: the package's)")
    manifest_p.add_argument(
        "--manifest-dir", help="template + icons (default: the ones shipped with the package)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check-config":
            return check_config(config_path(args.config))
        if args.command == "audit":
            return audit_verify(args)
        if args.command == "manifest":
            return build_manifest(args)
        if args.command in OPERATOR_COMMANDS or getattr(args, "run_id", None):
            return operate(args)
        from bot.server import serve

        return serve(config_path(args.config), getattr(args, "log_level", None))
    except UsageError as exc:
        print(f"mcms-bot: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
