"""Adaptive Card 1.5 validation for tests: Microsoft's JSON schema, vendored under
manifest/schema/adaptive-card/ (see its README for source and sha256), plus the one thing
Teams adds that the schema does not know — the card's top-level `msteams` object."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft6Validator, Draft7Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend

SCHEMA_FILE = (
    Path(__file__).resolve().parents[1]
    / "manifest" / "schema" / "adaptive-card" / "v1.5" / "adaptive-card.json"
)  # fmt: skip
# Teams' extension of a card: full width, and the entities of @mentions in its text.
MSTEAMS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "width": {"enum": ["Full"]},
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text", "mentioned"],
                "properties": {
                    "type": {"enum": ["mention"]},
                    "text": {"type": "string", "pattern": "^<at>.+</at>$"},
                    "mentioned": {
                        "type": "object",
                        "required": ["id", "name"],
                        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
                    },
                },
            },
        },
    },
}
# Teams renders up to 1.5; a card asking for more shows its fallbackText instead.
VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5")


@functools.cache
def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft6Validator.check_schema(schema)
    return schema


def _element_type(subschema: dict[str, Any]) -> str | None:
    """The `type` an anyOf branch accepts, when it refers to one element definition: the
    schema writes these as `{"required": ["type"], "allOf": [{"$ref": ...}]}`."""
    parts = subschema.get("allOf", [subschema])
    ref = parts[0].get("$ref", "") if len(parts) == 1 and isinstance(parts[0], dict) else ""
    if not ref.startswith("#/definitions/"):
        return None
    definition = _schema()["definitions"].get(ref.removeprefix("#/definitions/"), {})
    accepted = definition.get("properties", {}).get("type", {}).get("enum")
    return accepted[0] if isinstance(accepted, list) and len(accepted) == 1 else None


def _any_of(
    validator: Validator, any_of: list[Any], instance: Any, schema: dict[str, Any]
) -> Iterable[ValidationError]:
    """anyOf, picking the branch by the element's `type` where the branches are element
    definitions (the card schema's anyOf over ~30 element types at every element), which
    also names the real error. jsonschema's own anyOf evaluates every failing branch in
    full first: 0.2 s for one card, enough to stall the tests' event loop."""
    kind = instance.get("type") if isinstance(instance, dict) else None
    if isinstance(kind, str):
        for subschema in any_of:
            if _element_type(subschema) == kind:
                yield from validator.descend(instance, subschema)
                return
    for subschema in any_of:
        if validator.evolve(schema=subschema).is_valid(instance):
            return
    yield ValidationError(f"{instance!r:.200} is not valid under any of the given schemas")


_FastDraft6Validator = extend(Draft6Validator, {"anyOf": _any_of})


@functools.cache
def validator() -> Validator:
    return _FastDraft6Validator(_schema(), format_checker=Draft6Validator.FORMAT_CHECKER)


def _where(path: Iterable[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(card)"


def card_problems(card: dict[str, Any]) -> list[str]:
    """Why Teams would not render `card` as written, or [] when it is a valid 1.5 card."""
    problems = []
    if card.get("version") not in VERSIONS:
        problems.append(f".version: {card.get('version')!r} is not one of {VERSIONS}")
    rest = {k: v for k, v in card.items() if k != "msteams"}
    if "msteams" in card:
        for error in Draft7Validator(MSTEAMS).iter_errors(card["msteams"]):
            problems.append(f".msteams{_where(error.absolute_path)}: {error.message}")
    for error in validator().iter_errors(rest):
        problems.append(_explain(error))
    return problems


def _explain(error: ValidationError) -> str:
    """The most specific reason: the card schema is anyOf over element types, whose own
    message ("is not valid under any of the given schemas") names nothing."""
    while error.context:
        error = best_match(error.context)
    return f"{_where(error.absolute_path)}: {error.message[:300]}"
