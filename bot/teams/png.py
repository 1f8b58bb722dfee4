"""Just enough PNG reading to check a Teams app icon: its size, and an outline's pixels.

Teams rejects an app package whose icons have the wrong size, and shows an outline icon
that is not white-on-transparent as a blot; both are cheaper to catch here than in the
Teams admin centre. Only what icons need is decoded: 8-bit RGBA, not interlaced.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
RGBA = 6


class PngError(ValueError):
    """The bytes are not a PNG this module can read; the message says what is wrong."""


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool
    idat: bytes  # the concatenated, still compressed image data

    @property
    def kind(self) -> str:
        return f"{self.bit_depth}-bit {COLOR_TYPES.get(self.color_type, '?')}"

    def rgba_pixels(self) -> list[tuple[int, int, int, int]]:
        """Every pixel, row by row; only for 8-bit RGBA, non-interlaced images."""
        if (self.bit_depth, self.color_type, self.interlaced) != (8, RGBA, False):
            raise PngError(
                f"is {self.kind}{' interlaced' if self.interlaced else ''}, not 8-bit RGBA"
            )
        try:
            raw = zlib.decompress(self.idat)
        except zlib.error as exc:
            raise PngError(f"has corrupt image data ({exc})") from exc
        stride = self.width * 4
        if len(raw) != self.height * (stride + 1):
            raise PngError("has image data of the wrong length")
        pixels: list[tuple[int, int, int, int]] = []
        previous = bytearray(stride)
        for y in range(self.height):
            start = y * (stride + 1)
            row = _unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous)
            pixels += [(row[i], row[i + 1], row[i + 2], row[i + 3]) for i in range(0, stride, 4)]
            previous = row
        return pixels


def read_png(data: bytes) -> Png:
    """Parse the chunks of a PNG file; raises PngError if it is not one."""
    if not data.startswith(SIGNATURE):
        raise PngError("is not a PNG file (wrong signature)")
    pos, header, idat = len(SIGNATURE), None, bytearray()
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            break
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise PngError("is a truncated PNG (no IHDR chunk)")
    width, height, depth, color, _compression, _filter, interlace = header
    return Png(width, height, depth, color, interlace == 1, bytes(idat))


def _unfilter(kind: int, row: bytearray, prev: bytearray) -> bytearray:
    """Undo one scanline's filter (PNG spec, section 9), 4 bytes per pixel."""
    bpp = 4
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = prev[i]
        up_left = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 2:
            row[i] = (row[i] + up) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            row[i] = (row[i] + _paeth(left, up, up_left)) & 0xFF
        elif kind != 0:
            raise PngError(f"uses unknown filter type {kind}")
    return row


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c
