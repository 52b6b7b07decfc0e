"""The dev kit's PNG reader returns the pixels an encoder wrote, whatever the row filters."""

from __future__ import annotations

import struct
import zlib

import pytest

from agentstack_devkit.pngread import PNGError, decode, hex_colour

WIDTH, HEIGHT = 5, 6


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _predict(kind: int, left: int, up: int, upper_left: int) -> int:
    """What each filter type predicts a byte from (the PNG specification, section 9)."""
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    p = left + up - upper_left
    distances = [
        (abs(p - left), 0, left),
        (abs(p - up), 1, up),
        (abs(p - upper_left), 2, upper_left),
    ]
    return min(distances)[2]


def encode(pixels: list[list[tuple[int, ...]]], colour_type: int, filters: list[int]) -> bytes:
    """A PNG of ``pixels`` (rows of channel tuples), row ``y`` filtered by ``filters[y]``."""
    bpp = len(pixels[0][0])
    rows = [bytes(value for pixel in row for value in pixel) for row in pixels]
    stream = bytearray()
    for y, row in enumerate(rows):
        above = rows[y - 1] if y else bytes(len(row))
        kind = filters[y]
        stream.append(kind)
        for i, value in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            upper_left = above[i - bpp] if i >= bpp else 0
            stream.append((value - _predict(kind, left, above[i], upper_left)) & 0xFF)
    header = struct.pack(">IIBBBBB", len(pixels[0]), len(pixels), 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        # two IDAT chunks: the reader must join them before inflating
        + _chunk(b"IDAT", zlib.compress(bytes(stream))[:7])
        + _chunk(b"IDAT", zlib.compress(bytes(stream))[7:])
        + _chunk(b"IEND", b"")
    )


def _rgba_pixels() -> list[list[tuple[int, ...]]]:
    # values that overflow a byte when predicted, so modular arithmetic is exercised
    return [
        [
            ((x * 97 + y * 31) % 256, (x * 13 + 200 * y) % 256, (255 - x * y) % 256, 255 - 40 * x)
            for x in range(WIDTH)
        ]
        for y in range(HEIGHT)
    ]


@pytest.mark.parametrize(
    "filters",
    [[0] * HEIGHT, [1] * HEIGHT, [2] * HEIGHT, [3] * HEIGHT, [4] * HEIGHT, [0, 1, 2, 3, 4, 4]],
)
def test_every_filter_type_decodes_to_the_pixels_encoded(filters: list[int]) -> None:
    pixels = _rgba_pixels()
    image = decode(encode(pixels, 6, filters))
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    assert [[image.pixel(x, y) for x in range(WIDTH)] for y in range(HEIGHT)] == pixels


def test_rgb_and_grey_images_come_back_opaque_rgba() -> None:
    rgb = [[(x * 50, y * 40, 7) for x in range(WIDTH)] for y in range(HEIGHT)]
    image = decode(encode(rgb, 2, [4, 3, 2, 1, 0, 4]))
    assert image.pixel(3, 2) == (150, 80, 7, 255)
    grey = [[(x * 60,) for x in range(WIDTH)] for y in range(HEIGHT)]
    assert decode(encode(grey, 0, [1] * HEIGHT)).pixel(4, 5) == (240, 240, 240, 255)
    grey_alpha = [[(x * 60, 9) for x in range(WIDTH)] for y in range(HEIGHT)]
    assert decode(encode(grey_alpha, 4, [2] * HEIGHT)).pixel(2, 0) == (120, 120, 120, 9)


def test_count_finds_opaque_pixels_of_a_colour_within_a_tolerance() -> None:
    green = hex_colour("#1a7f37")
    assert green == (26, 127, 55)
    pixels = [[(*green, 255)] * WIDTH for _ in range(2)] + [
        [
            (28, 125, 55, 255),
            (26, 127, 55, 0),
            (255, 255, 255, 255),
            (26, 127, 55, 255),
            (0, 0, 0, 255),
        ]
    ]
    image = decode(encode(pixels, 6, [0, 2, 1]))
    assert image.count(green) == 2 * WIDTH + 1  # the transparent one is not drawn
    assert image.count(green, tolerance=2) == 2 * WIDTH + 2
    assert image.count((255, 0, 0)) == 0


def test_what_it_cannot_read_is_refused() -> None:
    with pytest.raises(PNGError, match="signature"):
        decode(b"GIF89a")
    palette = encode([[(1,)] * WIDTH] * HEIGHT, 3, [0] * HEIGHT)
    with pytest.raises(PNGError, match="colour type 3"):
        decode(palette)
    truncated = encode(_rgba_pixels(), 6, [0] * HEIGHT)
    with pytest.raises(PNGError, match="truncated"):
        decode(truncated[:40])
