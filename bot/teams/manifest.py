"""Build the Teams app package: the manifest template, commandLists from the registry, icons.

`manifest/manifest.template.json` holds what an organisation edits (names, developer URLs,
accent colour); the builder fills in the app id and version, and generates `commandLists`
from the same registry that `help` reads, so the commands Teams suggests are exactly the
ones the bot runs. The result is validated against Microsoft's own manifest schema (vendored
under manifest/schema/), plus the Teams rules that schema does not express: https developer
URLs, a semver version, the documented command lengths, icon sizes and the outline mask.
Every problem is collected and reported at once, each naming its field or file, because
Teams only answers "invalid package" to a bad upload.

The template, icons and schema ship in the wheel as the package `bot.teams.app_manifest`
(the top-level manifest/ directory) and are read with importlib.resources, so an installed
`mcms-bot manifest` needs no source tree.
"""

from __future__ import annotations

import functools
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, ValidationError

from bot.teams.png import PngError, read_png
from bot.version import installed_version
from commands.registry import Registry, default_registry

# The top-level manifest/ directory, as the wheel (and the editable install) ship it.
MANIFEST_PACKAGE = "bot.teams.app_manifest"
TEMPLATE_NAME = "manifest.template.json"
SCHEMA_PATH = ("schema", "teams", "v1.30", "MicrosoftTeams.schema.json")
SCOPES = ("personal", "team", "groupChat")
# Teams' documented limits. Schema v1.30 allows command titles of 128 and descriptions of
# 4000 characters, but the documented (and older schemas') 32 / 128 fit every client.
TITLE_MAX, DESCRIPTION_MAX = 32, 128
COMMANDS_MAX = 10  # per command list, Teams' manifest schema
# Schema v1.30 accepts http:// here; Teams refuses to publish an app whose pages are not https.
URL_FIELDS = ("developer.websiteUrl", "developer.privacyUrl", "developer.termsOfUseUrl")
ICON_SIZES = {"color": 192, "outline": 32}
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# The schema's top-level `version` is any string; Teams requires MAJOR.MINOR.PATCH.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
# Manifest fields filled from --app-id: a bad id is reported once, as the argument.
FROM_APP_ID = frozenset({"id", "bots[0].botId"})
PLACEHOLDER = re.compile(r"\{\{[^}]*\}\}")
WHITE = (255, 255, 255)
# Zip entries get a fixed timestamp: the same inputs give the same package, byte for byte.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)

JsonObject = dict[str, Any]


class ManifestError(Exception):
    """The package cannot be built; `problems` names every field or file at fault."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(problems)
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"cannot build the Teams app package:\n{lines}"


@dataclass(frozen=True)
class AppPackage:
    """A checked manifest and the icon files it names, ready to zip."""

    manifest: JsonObject
    icons: dict[str, bytes]  # file name at the zip's root → PNG bytes
    notes: tuple[str, ...] = ()  # worth saying, not worth refusing

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            text = json.dumps(self.manifest, indent=2, ensure_ascii=False) + "\n"
            entries = {"manifest.json": text.encode("utf-8"), **self.icons}
            for name, data in entries.items():
                info = zipfile.ZipInfo(name, ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
        return buffer.getvalue()

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(self.zip_bytes())
        partial.replace(path)


def manifest_files() -> Traversable:
    """The template, icons and schemas shipped with the package (manifest/ in the source)."""
    return resources.files(MANIFEST_PACKAGE)


@functools.cache
def schema_validator() -> Draft4Validator:
    """Microsoft's v1.30 manifest schema, vendored under manifest/schema/ (draft-04)."""
    node = manifest_files()
    for part in SCHEMA_PATH:
        node = node.joinpath(part)
    schema = json.loads(node.read_text(encoding="utf-8"))
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


def main_manifest(
    app_id: str, out: Path, app_version: str | None, manifest_dir: Path | None
) -> int:
    """`mcms-bot manifest`: write the package, or say what is wrong; the exit status."""
    version = app_version or installed_version()
    if version is None:
        print(
            "mcms-bot is not installed, so its version is unknown: pass --app-version",
            file=sys.stderr,
        )
        return 1
    try:
        package = build_package(app_id, version, default_registry(), manifest_dir)
        package.write(out)
    except ManifestError as exc:
        print(exc, file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    lists = package.manifest["bots"][0]["commandLists"]
    print(
        f"wrote {out}: manifest.json (schema {package.manifest['manifestVersion']}, app "
        f"{app_id}, version {version}, {len(lists[0]['commands'])} commands in "
        f"{len(lists)} scopes) + {', '.join(package.icons)}"
    )
    for note in package.notes:
        print(f"note: {note}")
    return 0


def command_lists(registry: Registry) -> tuple[list[JsonObject], list[str]]:
    """One command list per scope, every registry command in each; and the problems."""
    problems: list[str] = []
    commands: list[JsonObject] = []
    suggested = [c for c in registry.commands() if c.suggested]
    if len(suggested) > COMMANDS_MAX:
        problems.append(
            f"commandLists: {len(suggested)} suggested commands (Teams allows {COMMANDS_MAX}); "
            "set suggested=False on one in commands/"
        )
    for command in suggested:
        description = f"{command.usage} — {command.summary}" if command.usage else command.summary
        where = f"commandLists: command {command.name!r}"
        if len(command.name) > TITLE_MAX:
            problems.append(f"{where}: title is {len(command.name)} characters (limit {TITLE_MAX})")
        if len(description) > DESCRIPTION_MAX:
            problems.append(
                f"{where}: description (usage + summary) is {len(description)} characters "
                f"(limit {DESCRIPTION_MAX}); shorten the command's summary in commands/"
            )
        commands.append({"title": command.name, "description": description})
    return [{"scopes": [scope], "commands": commands} for scope in SCOPES], problems


def build_package(
    app_id: str,
    version: str,
    registry: Registry,
    manifest_dir: Traversable | None = None,
) -> AppPackage:
    """The package for `app_id`, or ManifestError listing everything wrong.

    `manifest_dir` holds the template and icons (default: the ones shipped with the package);
    the schema always comes from the package.
    """
    directory = manifest_dir if manifest_dir is not None else manifest_files()
    problems: list[str] = []
    bad_app_id = not GUID.match(app_id)
    if bad_app_id:
        problems.append(
            f"--app-id {app_id!r} is not a GUID (like 00000000-0000-0000-0000-000000000000): "
            "use the Microsoft App ID of the Azure Bot registration"
        )
    if not SEMVER.match(version):
        problems.append(f"version {version!r} is not MAJOR.MINOR.PATCH, as Teams requires")
    manifest = _load_template(directory.joinpath(TEMPLATE_NAME))
    manifest = _fill(manifest, {"{{app-id}}": app_id, "{{version}}": version})
    template_problems = _teams_rules(manifest)
    bots = manifest.get("bots")
    if not (isinstance(bots, list) and len(bots) == 1 and isinstance(bots[0], dict)):
        problems.append(f"bots: {TEMPLATE_NAME} must declare exactly one bot")
    elif "commandLists" in bots[0]:
        problems.append(
            f"bots[0].commandLists: remove it from {TEMPLATE_NAME}; the command lists are "
            "generated from the command registry so they cannot drift from the bot"
        )
    else:
        bots[0]["commandLists"], command_problems = command_lists(registry)
        template_problems += command_problems
    skip = FROM_APP_ID if bad_app_id else frozenset()
    problems += [p for path, p in schema_problems(manifest) if path not in skip]
    problems += template_problems
    icons, icon_problems = _load_icons(manifest, directory)
    problems += icon_problems
    if problems:
        raise ManifestError(problems)
    examples = [f for f in URL_FIELDS if "example.com" in str(_get(manifest, f))]
    notes = (
        (
            f"{', '.join(examples)} still hold the template's example.com URLs: set your "
            f"organisation's in {TEMPLATE_NAME} before publishing beyond a test tenant",
        )
        if examples
        else ()
    )
    return AppPackage(manifest, icons, notes)


def schema_problems(manifest: JsonObject) -> list[tuple[str, str]]:
    """(field path, "path: why") for each place the manifest breaks Microsoft's schema."""
    errors = sorted(schema_validator().iter_errors(manifest), key=lambda e: list(e.absolute_path))
    return [(_path(e.absolute_path), f"{_path(e.absolute_path)}: {_why(e)}") for e in errors]


def _path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out or "(manifest)"


def _why(error: ValidationError) -> str:
    """jsonschema's message, without repeating a long value back."""
    value, limit = error.instance, error.validator_value
    if error.validator == "maxLength" and isinstance(value, str):
        return f"{len(value)} characters, limit {limit}"
    if error.validator == "maxItems" and isinstance(value, list):
        return f"{len(value)} entries, limit {limit}"
    if error.validator == "pattern":
        return f"{value!r} does not match {limit}"
    message = error.message
    return message if len(message) <= 200 else message[:197] + "..."


def _load_template(path: Traversable) -> JsonObject:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError([f"{path}: template not found (pass --manifest-dir)"]) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError([f"{path}: not readable JSON ({exc})"]) from exc
    if not isinstance(loaded, dict):
        raise ManifestError([f"{path}: must hold a JSON object"])
    return loaded


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node
    if isinstance(node, list):
        return [_fill(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _fill(item, values) for key, item in node.items()}
    return node


def _get(manifest: JsonObject, dotted: str) -> Any:
    node: Any = manifest
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _teams_rules(manifest: JsonObject) -> list[str]:
    """What Teams requires beyond the schema (which reports missing and over-long fields)."""
    problems = [
        f"{path}: placeholder {match} is not filled by `mcms-bot manifest`"
        for path, text in _strings(manifest, "")
        for match in PLACEHOLDER.findall(text)
    ]
    for field in URL_FIELDS:
        url = _get(manifest, field)
        if isinstance(url, str) and not url.startswith("https://"):
            problems.append(f"{field}: must be an https:// URL, is {url!r}")
    return problems


def _strings(node: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(v, f"{path}.{k}".lstrip("."))]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{path}[{i}]")]
    return []


def _load_icons(
    manifest: JsonObject, manifest_dir: Traversable
) -> tuple[dict[str, bytes], list[str]]:
    icons: dict[str, bytes] = {}
    problems: list[str] = []
    declared: JsonObject = manifest["icons"] if isinstance(manifest.get("icons"), dict) else {}
    for key, size in ICON_SIZES.items():
        field, name = f"icons.{key}", declared.get(key)
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            problems.append(f"{field}: must name a PNG file next to the template, is {name!r}")
            continue
        path = manifest_dir.joinpath(name)
        try:
            data = path.read_bytes()
        except OSError:
            problems.append(
                f"{field}: {path} not found (python manifest/make_icons.py draws the icons)"
            )
            continue
        try:
            png = read_png(data)
            if (png.width, png.height) != (size, size):
                problems.append(
                    f"{field}: {name} is {png.width}×{png.height}; Teams requires {size}×{size}"
                )
            elif key == "outline":
                problems += _outline_problems(field, name, png.rgba_pixels(), size)
        except PngError as exc:
            problems.append(f"{field}: {name} {exc}")
            continue
        icons[name] = data
    return icons, problems


def _outline_problems(
    field: str, name: str, pixels: list[tuple[int, int, int, int]], size: int
) -> list[str]:
    """Teams draws the outline icon as a white mask: any other colour shows up as a blot."""
    coloured = [i for i, (r, g, b, a) in enumerate(pixels) if a and (r, g, b) != WHITE]
    if coloured:
        first = coloured[0]
        r, g, b, _ = pixels[first]
        return [
            f"{field}: {name} has {len(coloured)} pixel(s) that are neither white nor "
            f"transparent (first at x={first % size}, y={first // size}: #{r:02x}{g:02x}{b:02x})"
        ]
    if not any(a for *_, a in pixels):
        return [f"{field}: {name} is fully transparent"]
    return []
