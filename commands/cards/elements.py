"""Pure Adaptive Card builders (schema 1.5, the newest Teams renders).

Renderers return plain dicts; bot/ attaches them. Keep cards far below Teams' ~100 KB limit.
TextBlocks and FactSet values are markdown in Teams: text the bot did not write (a Grafana
annotation, a display name, a typed reason, what a host answered) goes through `plain()`
first, so it cannot turn into a link, emphasis, a list or a mention in somebody's card.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

Card = dict[str, Any]
Element = dict[str, Any]

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


# What gives outside text a meaning in Teams' markdown: emphasis, code, links and images
# ([ ] — a link needs them), raw HTML (< >), entities (&), and a backslash only where it
# would escape what follows (CommonMark: before ASCII punctuation), so a Windows path like
# D:\MCMS\releases reads as typed. Dots, dashes and colons inside text stay as they are:
# escaping them all made versions and paths read "1\.4\.2" in clients that show escapes
# literally (Teams mobile), for no protection.
_INLINE = re.compile(r"(\\(?=[!-/:-@\[-`{-~])|[`*_\[\]<>~&])")
# Only at the start of the text do these make a block: a heading, a quote, a list item.
_LEADING = re.compile(r"^(\s*)(>|(?:[#+\-]|\d{1,9}[.)])(?=\s|$))")
# What an autolinker turns into a link without any markdown: a scheme or a www. host.
_AUTOLINK = re.compile(r"(://|(?i:\bwww)\.)")
# Newlines make paragraphs, list items and headings in markdown; external text gets none.
_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def plain(value: object, limit: int = 1000) -> str:
    """`value` as literal text for a TextBlock or a fact: never a link, an image, emphasis or
    a block — one line, at most `limit` characters (cut before escaping, so an escape is never
    split)."""
    text = _BREAKS.sub(" ", str(value))[:limit]
    text = _INLINE.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: m.group(1).replace("/", "\\/").replace(".", "\\."), text)
    return _LEADING.sub(lambda m: m.group(1) + m.group(2)[:-1] + "\\" + m.group(2)[-1], text)


def card(body: Sequence[Element], actions: Sequence[Element] = ()) -> Card:
    out: Card = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA,
        "version": "1.5",
        "msteams": {"width": "Full"},
        "body": list(body),
    }
    if actions:
        out["actions"] = list(actions)
    return out


def title(text: str, color: str = "Default") -> Element:
    return {
        "type": "TextBlock",
        "text": text,
        "weight": "Bolder",
        "size": "Medium",
        "wrap": True,
        "color": color,
    }


def text(value: str, *, subtle: bool = False, color: str = "Default") -> Element:
    block: Element = {"type": "TextBlock", "text": value, "wrap": True, "color": color}
    if subtle:
        block["isSubtle"] = True
        block["size"] = "Small"
    return block


def facts(pairs: Sequence[tuple[str, str]]) -> Element:
    return {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in pairs]}


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    colors: Sequence[str | None] = (),
    widths: Sequence[int] = (),
) -> Element:
    """A Table element; `colors[i]` colours row i (Good / Attention / Warning) if given;
    `widths` are relative column weights (equal when not given)."""

    def cell(value: str, bold: bool = False, color: str | None = None) -> Element:
        block: Element = {"type": "TextBlock", "text": value, "wrap": True}
        if bold:
            block["weight"] = "Bolder"
        if color:
            block["color"] = color
        return {"type": "TableCell", "items": [block]}

    body_rows = []
    for i, row in enumerate(rows):
        color = colors[i] if i < len(colors) else None
        body_rows.append({"type": "TableRow", "cells": [cell(v, color=color) for v in row]})
    return {
        "type": "Table",
        "firstRowAsHeader": True,
        "showGridLines": True,
        "columns": [{"width": w} for w in (widths or [1] * len(headers))],
        "rows": [{"type": "TableRow", "cells": [cell(h, bold=True) for h in headers]}, *body_rows],
    }


def execute_button(verb: str, title: str, data: dict[str, Any], style: str = "default") -> Element:
    """An Action.Execute button that falls back to Action.Submit on old clients.

    `data` must carry `verb` too: a Submit arrives as a message whose value is only `data`.
    """
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": data,
        "style": style,
        "fallback": {"type": "Action.Submit", "title": title, "data": data},
    }
