"""`mcms-bot manifest`: a Teams app package that Microsoft's own schema accepts.

The schema is the v1.30 file bundled in npm `@microsoft/app-manifest` 1.1.2, vendored under
manifest/schema/ (never downloaded at test time). The builder validates every package
against it, so a template that breaks the schema is refused with the field named; a
deliberately broken manifest fails it here too, so the check is known to bite.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from jsonschema import Draft4Validator

from bot.cli import main
from bot.teams.manifest import ManifestError, build_package, manifest_files
from bot.teams.png import read_png
from commands.registry import Command, Registry, default_registry

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_DIR = ROOT / "manifest"
SCHEMA_FILE = MANIFEST_DIR / "schema" / "teams" / "v1.30" / "MicrosoftTeams.schema.json"
SCHEMA_URL = "https://developer.microsoft.com/json-schemas/teams/v1.30/MicrosoftTeams.schema.json"
APP_ID = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
REQUIRED = [
    "manifestVersion",
    "version",
    "id",
    "developer",
    "name",
    "description",
    "icons",
    "accentColor",
]


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    # Against the meta-schema without format checks: one pattern (extensionFunction.name)
    # uses the JavaScript-only `\p{L}`, which Python's `re` cannot compile. Manifests
    # without Office add-in extensions never reach it.
    Draft4Validator(Draft4Validator.META_SCHEMA).validate(schema)
    return Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)


@pytest.fixture(scope="module")
def cli_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package written by the installed `mcms-bot` console script, as an operator runs it."""
    out = tmp_path_factory.mktemp("package") / "app.zip"
    script = str(Path(sys.executable).parent / "mcms-bot")
    done = subprocess.run(
        [script, "manifest", "--app-id", APP_ID, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    return out


def zipped_manifest(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("manifest.json"))
    return loaded


def schema_errors(validator: Draft4Validator, manifest: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]


def manifest_dir_copy(tmp_path: Path) -> Path:
    target = tmp_path / "manifest"
    shutil.copytree(MANIFEST_DIR, target, ignore=shutil.ignore_patterns("schema", "*.py"))
    return target


def edit_template(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "manifest.template.json"
    template = json.loads(path.read_text(encoding="utf-8"))
    change(template)
    path.write_text(json.dumps(template), encoding="utf-8")


def build(directory: Path | None = None, registry: Registry | None = None) -> dict[str, Any]:
    return build_package(APP_ID, "1.2.3", registry or default_registry(), directory).manifest


def problems_of(directory: Path | None, registry: Registry | None = None) -> str:
    with pytest.raises(ManifestError) as caught:
        build(directory, registry)
    return str(caught.value)


# --- Microsoft's schema ---------------------------------------------------------------


def test_cli_built_manifest_passes_microsofts_v1_30_schema(
    cli_zip: Path, validator: Draft4Validator
) -> None:
    manifest = zipped_manifest(cli_zip)
    assert schema_errors(validator, manifest) == []
    assert manifest["$schema"] == SCHEMA_URL
    assert manifest["manifestVersion"] == "1.30"
    assert manifest["id"] == manifest["bots"][0]["botId"] == APP_ID


@pytest.mark.parametrize("field", REQUIRED)
def test_manifest_missing_a_required_field_fails_the_schema(
    cli_zip: Path, validator: Draft4Validator, field: str
) -> None:
    broken = zipped_manifest(cli_zip)
    del broken[field]
    assert any(f"'{field}' is a required property" in e for e in schema_errors(validator, broken))


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        (("bots", 0, "botId"), "not-a-guid", "bots.0.botId"),
        (("name", "short"), "x" * 31, "name.short"),
        (("accentColor",), "blue", "accentColor"),
        (("bots", 0, "commandLists", 0, "scopes"), ["meeting"], "bots.0.commandLists.0.scopes.0"),
    ],
    ids=["bad-bot-guid", "long-short-name", "bad-colour", "unknown-scope"],
)
def test_schema_rejects_invalid_values(
    cli_zip: Path, validator: Draft4Validator, path: tuple[str | int, ...], value: Any, names: str
) -> None:
    broken = copy.deepcopy(zipped_manifest(cli_zip))
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(e.startswith(f"{names}:") for e in schema_errors(validator, broken))


def test_channel_scope_settings_for_ops_channels(cli_zip: Path) -> None:
    """Ops channels are often private or shared; the Add button should offer a team first."""
    manifest = zipped_manifest(cli_zip)
    assert sorted(manifest["supportedChannelTypes"]) == ["privateChannels", "sharedChannels"]
    assert manifest["defaultInstallScope"] == "team"
    assert "team" in manifest["bots"][0]["scopes"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.update(accentColor="blue"), "accentColor: 'blue' does not match"),
        (lambda t: t.update(supportedChannelTypes=["secretChannels"]), "supportedChannelTypes[0]:"),
        (lambda t: t.update(defaultInstallScope="everywhere"), "defaultInstallScope:"),
        (lambda t: t.update(colour="#123456"), "Additional properties are not allowed"),
        (lambda t: t["developer"].pop("privacyUrl"), "developer: 'privacyUrl' is a required"),
        (lambda t: t["name"].update(full="x" * 101), "name.full: 101 characters, limit 100"),
    ],
    ids=["colour", "channel-type", "install-scope", "unknown-key", "missing-url", "long-name"],
)
def test_the_builder_refuses_what_the_schema_refuses(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    """No hand-written copy of these rules exists: the builder runs Microsoft's schema."""
    directory = manifest_dir_copy(tmp_path)
    edit_template(directory, change)
    assert expected in problems_of(directory)


def test_http_developer_urls_are_refused_though_the_schema_allows_them(tmp_path: Path) -> None:
    directory = manifest_dir_copy(tmp_path)
    edit_template(directory, lambda t: t["developer"].update(privacyUrl="http://x.example/p"))
    assert "developer.privacyUrl: must be an https:// URL" in problems_of(directory)


def test_the_package_reads_its_files_from_the_installed_package() -> None:
    """The default template, icons and schema are package data, not paths in a source tree."""
    files = manifest_files()
    assert files.joinpath("manifest.template.json").is_file()
    assert files.joinpath("color.png").is_file() and files.joinpath("outline.png").is_file()
    schema = files.joinpath("schema").joinpath("teams").joinpath("v1.30")
    assert schema.joinpath("MicrosoftTeams.schema.json").is_file()


def test_vendored_schema_is_the_unchanged_upstream_file() -> None:
    recorded = (SCHEMA_FILE.parents[2] / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert f"`{digest}`" in recorded, "schema file differs from the sha256 in its README"
    assert "`@microsoft/app-manifest`, version **1.1.2**" in recorded


# --- The package ------------------------------------------------------------------------


def test_zip_holds_the_manifest_and_two_icons_at_its_root(cli_zip: Path) -> None:
    with zipfile.ZipFile(cli_zip) as archive:
        assert sorted(archive.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["icons"] == {"color": "color.png", "outline": "outline.png"}
        color = read_png(archive.read("color.png"))
        outline = read_png(archive.read("outline.png"))
    assert (color.width, color.height) == (192, 192)
    assert (outline.width, outline.height) == (32, 32)
    pixels = outline.rgba_pixels()
    assert all(a == 0 or (r, g, b) == (255, 255, 255) for r, g, b, a in pixels)
    assert sum(a == 255 for *_, a in pixels) > 100, "the outline icon must show something"
    assert pixels[0][3] == 0, "the outline icon's background must be transparent"


def test_command_lists_are_the_registry_in_each_scope(cli_zip: Path) -> None:
    lists = zipped_manifest(cli_zip)["bots"][0]["commandLists"]
    registry = [c for c in default_registry().commands() if c.suggested]
    assert [cl["scopes"] for cl in lists] == [["personal"], ["team"], ["groupChat"]]
    for command_list in lists:
        assert [c["title"] for c in command_list["commands"]] == [c.name for c in registry]
        for entry, command in zip(command_list["commands"], registry, strict=True):
            assert entry["description"].endswith(command.summary)
            assert entry["description"].startswith(command.usage)


def test_a_new_command_in_the_registry_appears_in_the_manifest() -> None:
    extra = Command("uptime", "ENVIRONMENT", "How long it has run.", None, "required", 0, _run)
    # Teams suggests at most 10 commands: the new one takes the last suggested one's place.
    known = [c for c in default_registry().commands() if c.suggested][:9]
    manifest = build(registry=Registry([*known, extra]))
    for command_list in manifest["bots"][0]["commandLists"]:
        assert command_list["commands"][-1] == {
            "title": "uptime",
            "description": "ENVIRONMENT — How long it has run.",
        }


def test_more_than_ten_suggested_commands_is_a_clear_error() -> None:
    extra = Command("uptime", "ENVIRONMENT", "How long it has run.", None, "required", 0, _run)
    with pytest.raises(ManifestError, match="11 suggested commands"):
        build(registry=Registry([*default_registry().commands(), extra]))


def test_a_command_not_suggested_is_left_out_of_the_lists_but_not_out_of_help() -> None:
    lists = build()["bots"][0]["commandLists"]
    for name in ("switchback", "lock", "unlock"):
        assert all(name not in [c["title"] for c in cl["commands"]] for cl in lists)
        assert default_registry().get(name) is not None


def test_same_inputs_give_the_same_zip_bytes() -> None:
    def package() -> bytes:
        return build_package(APP_ID, "1.2.3", default_registry()).zip_bytes()

    assert package() == package()


def test_committed_icons_are_what_make_icons_draws() -> None:
    make_icons = _load_module(MANIFEST_DIR / "make_icons.py")
    for name in ("color.png", "outline.png"):
        assert (MANIFEST_DIR / name).read_bytes() == make_icons.render(name), (
            f"manifest/{name} was changed by hand: edit make_icons.py and run it"
        )


# --- Clear errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "app_id", ["", "nope", "6f1c2a9e3b4d4e5f8a7b0c1d2e3f4a5b", f"{APP_ID}x", f" {APP_ID}"]
)
def test_cli_refuses_a_bad_guid_naming_it(
    app_id: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "app.zip"
    assert main(["manifest", "--app-id", app_id, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"--app-id {app_id!r} is not a GUID" in err
    assert not out.exists()


def test_cli_refuses_a_missing_icon_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = manifest_dir_copy(tmp_path)
    (directory / "outline.png").unlink()
    argv = ["manifest", "--app-id", APP_ID, "--manifest-dir", str(directory)]
    assert main([*argv, "--out", str(tmp_path / "app.zip")]) == 1
    err = capsys.readouterr().err
    assert f"icons.outline: {directory / 'outline.png'} not found" in err
    assert "icons.color" not in err


def test_cli_refuses_an_over_long_field_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = manifest_dir_copy(tmp_path)
    edit_template(directory, lambda t: t["name"].update(short="MCMS Operations Chat Bot (Prod)"))
    argv = ["manifest", "--app-id", APP_ID, "--manifest-dir", str(directory)]
    assert main([*argv, "--out", str(tmp_path / "app.zip")]) == 1
    assert "name.short: 31 characters, limit 30" in capsys.readouterr().err


def test_cli_says_when_it_cannot_write_the_zip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("a file, not a directory")
    out = tmp_path / "taken" / "app.zip"
    assert main(["manifest", "--app-id", APP_ID, "--out", str(out)]) == 1
    assert f"cannot write {out}" in capsys.readouterr().err


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    directory = manifest_dir_copy(tmp_path)
    edit_template(directory, lambda t: t["description"].update(short="x" * 81))
    (directory / "color.png").unlink()
    with pytest.raises(ManifestError) as caught:
        build_package("nope", "1.2", default_registry(), directory)
    fields = [p.split(":")[0].split(" ")[0] for p in caught.value.problems]
    assert fields == ["--app-id", "version", "description.short", "icons.color"]


@pytest.mark.parametrize(
    ("size", "outline_pixel", "expected"),
    [
        (16, None, r"icons.outline: outline.png is 16×16; Teams requires 32×32"),
        (32, (255, 0, 0, 255), r"outline.png has 1 pixel\(s\) .* \(first at x=3, y=2: #ff0000\)"),
        (32, "empty", r"icons.outline: outline.png is fully transparent"),
    ],
    ids=["wrong-size", "coloured-pixel", "empty"],
)
def test_a_wrong_outline_icon_is_refused(
    tmp_path: Path, size: int, outline_pixel: object, expected: str
) -> None:
    make_icons = _load_module(MANIFEST_DIR / "make_icons.py")
    directory = manifest_dir_copy(tmp_path)
    pixels = make_icons.outline_icon(size)
    if outline_pixel == "empty":
        pixels = [(255, 255, 255, 0)] * (size * size)
    elif outline_pixel is not None:
        pixels[2 * size + 3] = outline_pixel
    (directory / "outline.png").write_bytes(make_icons.encode_png(size, pixels))
    assert re.search(expected, problems_of(directory))


def test_a_corrupt_colour_icon_is_refused(tmp_path: Path) -> None:
    directory = manifest_dir_copy(tmp_path)
    (directory / "color.png").write_bytes(b"GIF89a not a png")
    assert "icons.color: color.png is not a PNG file (wrong signature)" in problems_of(directory)


def test_a_template_with_hand_written_command_lists_is_refused(tmp_path: Path) -> None:
    directory = manifest_dir_copy(tmp_path)
    edit_template(
        directory,
        lambda t: t["bots"][0].update(
            commandLists=[{"scopes": ["personal"], "commands": [{"title": "help"}]}]
        ),
    )
    assert "bots[0].commandLists: remove it from manifest.template.json" in problems_of(directory)


def test_an_unfilled_placeholder_is_refused(tmp_path: Path) -> None:
    directory = manifest_dir_copy(tmp_path)
    edit_template(directory, lambda t: t["developer"].update(name="{{team}}"))
    assert "developer.name: placeholder {{team}} is not filled" in problems_of(directory)


def test_over_long_command_descriptions_and_too_many_commands_are_refused() -> None:
    long_one = Command("explain", "", "x" * 129, None, "none", 0, _run)
    many = [Command(f"c{i}", "", "Does a thing.", None, "none", 0, _run) for i in range(12)]
    problems = problems_of(None, Registry([long_one, *many]))
    assert "command 'explain': description (usage + summary) is 129 characters" in problems
    for i in range(3):  # the schema's limit, in each scope's list
        assert f"bots[0].commandLists[{i}].commands: 13 entries, limit 12" in problems


async def _run(call: Any) -> Any:
    raise AssertionError("never run")


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
