"""Read the pixels of a PNG with the standard library: enough for screenshot checks.

The live page's tests take a chart's screenshot from Chromium and count the pixels
drawn in a series' colour, to tell a chart with data from an empty frame. Chromium
writes 8-bit, non-interlaced greyscale, RGB or RGBA PNGs; this module inflates the
``IDAT`` chunks with :mod:`zlib`, undoes the five PNG filter types row by row and
returns RGBA pixels. Anything else (palette, 16-bit, interlaced) is refused with
:class:`PNGError` rather than misread.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
"""Channels per pixel by PNG colour type: grey, RGB, grey+alpha, RGBA."""

RGB = tuple[int, int, int]


class PNGError(ValueError):
    """Not a PNG this reader understands."""


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    rgba: bytes
    """Row-major pixels, four bytes each."""

    def pixel(self, x: int, y: int) -> tuple[int, int, int, int]:
        at = 4 * (y * self.width + x)
        r, g, b, a = self.rgba[at : at + 4]
        return r, g, b, a

    def count(self, colour: RGB, tolerance: int = 0) -> int:
        """Opaque pixels within ``tolerance`` of ``colour`` in each channel."""
        found = 0
        want_r, want_g, want_b = colour
        data = self.rgba
        for at in range(0, len(data), 4):
            if (
                data[at + 3] == 255
                and abs(data[at] - want_r) <= tolerance
                and abs(data[at + 1] - want_g) <= tolerance
                and abs(data[at + 2] - want_b) <= tolerance
            ):
                found += 1
        return found


def hex_colour(text: str) -> RGB:
    """``"#1a7f37"`` as ``(26, 127, 55)``."""
    value = text.removeprefix("#")
    if len(value) != 6:
        raise ValueError(f"not a #rrggbb colour: {text!r}")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def decode(data: bytes) -> Image:
    """The pixels of ``data``, a PNG file, as RGBA."""
    if not data.startswith(SIGNATURE):
        raise PNGError("not a PNG: bad signature")
    at, header, compressed, ended = len(SIGNATURE), b"", bytearray(), False
    while not ended:
        if at + 8 > len(data):
            raise PNGError("truncated: no IEND chunk")
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        body = data[at + 8 : at + 8 + length]
        if len(body) != length:
            raise PNGError(f"truncated {kind!r} chunk")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            compressed += body
        ended = kind == b"IEND"
        at += 12 + length
    if len(header) != 13:
        raise PNGError("no IHDR chunk")
    width, height, depth, colour, _method, _filter, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace != 0:
        raise PNGError(
            f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}"
        )
    channels = _CHANNELS[colour]
    try:
        inflated = zlib.decompress(bytes(compressed))
    except zlib.error as error:
        raise PNGError(f"image data does not inflate: {error}") from error
    raw = _unfilter(inflated, width, height, channels)
    return Image(width, height, _to_rgba(raw, channels))


def _unfilter(data: bytes, width: int, height: int, bpp: int) -> bytes:
    """Undo each row's filter (None, Sub, Up, Average, Paeth); ``bpp`` bytes per pixel."""
    stride = width * bpp
    if len(data) != height * (stride + 1):
        raise PNGError(f"{len(data)} bytes of image data for {width}x{height}x{bpp}")
    out = bytearray(height * stride)
    previous = bytearray(stride)
    for y in range(height):
        kind = data[y * (stride + 1)]
        row = bytearray(data[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                row[i] = (row[i] + row[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                row[i] = (row[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = row[i - bpp] if i >= bpp else 0
                upper_left = previous[i - bpp] if i >= bpp else 0
                row[i] = (row[i] + _paeth(left, previous[i], upper_left)) & 0xFF
        elif kind != 0:
            raise PNGError(f"unknown filter type {kind} in row {y}")
        out[y * stride : (y + 1) * stride] = row
        previous = row
    return bytes(out)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _to_rgba(raw: bytes, channels: int) -> bytes:
    if channels == 4:
        return raw
    out = bytearray()
    for at in range(0, len(raw), channels):
        if channels == 3:
            out += raw[at : at + 3] + b"\xff"
        elif channels == 2:
            out += bytes((raw[at], raw[at], raw[at], raw[at + 1]))
        else:
            out += bytes((raw[at], raw[at], raw[at], 255))
    return bytes(out)
