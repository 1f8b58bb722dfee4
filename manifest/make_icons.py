"""Draw the Teams app icons: `python manifest/make_icons.py` rewrites color.png and outline.png.

A circular "roll back" arrow, white: on the accent colour (192×192, colour icon) and on
transparent (32×32, outline icon — Teams requires pure white on transparent there).
Standard library only, and deterministic: tests check the committed files are exactly
what this script draws, so an icon is never edited by hand without its source.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (0x1F, 0x5F, 0x8B)  # keep equal to accentColor in manifest.template.json
SAMPLES = 4  # supersampling per axis: smooth edges without a drawing library

Pixel = tuple[int, int, int, int]


def glyph(x: float, y: float) -> bool:
    """True inside the arrow; x and y in [-1, 1], y pointing up, the glyph fills ~90%."""
    radius, angle = math.hypot(x, y), math.degrees(math.atan2(y, x)) % 360
    # The ring runs counter-clockwise from 80° round to 10°, leaving a gap at the top right.
    if 0.52 <= radius <= 0.78 and not 10 <= angle <= 80:
        return True
    # The arrowhead sits at the ring's 10° end and points on into the gap, counter-clockwise:
    # turning the clock back.
    end = math.radians(10)
    base_x, base_y = 0.65 * math.cos(end), 0.65 * math.sin(end)
    tangent_x, tangent_y = -math.sin(end), math.cos(end)
    normal_x, normal_y = math.cos(end), math.sin(end)
    tip = (base_x + 0.32 * tangent_x, base_y + 0.32 * tangent_y)
    outer = (base_x + 0.3 * normal_x, base_y + 0.3 * normal_y)
    inner = (base_x - 0.3 * normal_x, base_y - 0.3 * normal_y)
    return _in_triangle((x, y), tip, outer, inner)


def _in_triangle(
    p: tuple[float, float], a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]
) -> bool:
    def side(u: tuple[float, float], v: tuple[float, float]) -> float:
        return (v[0] - u[0]) * (p[1] - u[1]) - (v[1] - u[1]) * (p[0] - u[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return (s1 >= 0 and s2 >= 0 and s3 >= 0) or (s1 <= 0 and s2 <= 0 and s3 <= 0)


def coverage(size: int, scale: float) -> list[float]:
    """Share of each pixel inside the glyph; `scale` < 1 leaves a margin."""
    out: list[float] = []
    step = 1 / SAMPLES
    for row in range(size):
        for col in range(size):
            hits = 0
            for sy in range(SAMPLES):
                for sx in range(SAMPLES):
                    x = ((col + (sx + 0.5) * step) / size * 2 - 1) / scale
                    y = (1 - (row + (sy + 0.5) * step) / size * 2) / scale
                    hits += glyph(x, y)
            out.append(hits / SAMPLES**2)
    return out


def colour_icon(size: int = 192) -> list[Pixel]:
    def blend(share: float) -> Pixel:
        r, g, b = (round(c + (255 - c) * share) for c in ACCENT)
        return (r, g, b, 255)

    return [blend(share) for share in coverage(size, 0.62)]


def outline_icon(size: int = 32) -> list[Pixel]:
    return [(255, 255, 255, round(255 * share)) for share in coverage(size, 0.85)]


def encode_png(size: int, pixels: list[Pixel]) -> bytes:
    """An 8-bit RGBA PNG, no filtering; fixed zlib level so the bytes are reproducible."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(
        b"\x00" + bytes(v for px in pixels[y * size : (y + 1) * size] for v in px)
        for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


ICONS: dict[str, tuple[int, Callable[[int], list[Pixel]]]] = {
    "color.png": (192, colour_icon),
    "outline.png": (32, outline_icon),
}


def render(name: str) -> bytes:
    size, draw = ICONS[name]
    return encode_png(size, draw(size))


def main(out_dir: Path = HERE) -> int:
    for name in ICONS:
        (out_dir / name).write_bytes(render(name))
        print(f"wrote {out_dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
