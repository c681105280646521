"""Loss curves: a chart drawn in the terminal, and a PNG written with the standard library alone.

No plotting dependency: the PNG is a small RGB raster (lines by Bresenham, a marker per point) encoded
with zlib, and it carries a `tEXt` chunk `trainctl:points` with the number of points of each series, so
a script (or a test) can check what was drawn without image tooling.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

Point = tuple[float, float]


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]
    color: tuple[int, int, int]
    glyph: str


def _bounds(series: Sequence[Series]) -> tuple[float, float, float, float]:
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        pad = abs(y0) * 0.05 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    return x0, x1, y0, y1


def terminal_chart(series: Sequence[Series], *, width: int = 64, height: int = 16, x_label: str = "step") -> str:
    """The curves as text: a y axis with its range, one glyph per point, the x range underneath."""
    drawn = [s for s in series if s.points]
    if not drawn:
        return "(no points yet)"
    x0, x1, y0, y1 = _bounds(drawn)
    grid = [[" "] * width for _ in range(height)]
    for s in drawn:
        for x, y in s.points:
            col = round((x - x0) / (x1 - x0) * (width - 1))
            row = height - 1 - round((y - y0) / (y1 - y0) * (height - 1))
            grid[row][col] = s.glyph
    top, bottom = f"{y1:.4g}", f"{y0:.4g}"
    pad = max(len(top), len(bottom))
    out = []
    for i, cells in enumerate(grid):
        label = top if i == 0 else bottom if i == height - 1 else ""
        out.append(f"{label:>{pad}} |{''.join(cells)}")
    out.append(" " * pad + " +" + "-" * width)
    left, right = f"{x0:g}", f"{x1:g}"
    out.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right + f"  ({x_label})")
    out.append("  ".join(f"{s.glyph} {s.name} ({len(s.points)} points)" for s in drawn))
    return "\n".join(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: list[bytearray], width: int, height: int, text: dict[str, str] | None = None) -> bytes:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)  # filter type 0 on every row
    out = [b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for key, value in (text or {}).items():
        out.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1")))
    out += [_chunk(b"IDAT", zlib.compress(raw, 9)), _chunk(b"IEND", b"")]
    return b"".join(out)


class Canvas:
    def __init__(self, width: int, height: int, background: tuple[int, int, int] = (255, 255, 255)):
        self.width, self.height = width, height
        self.rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def set(self, x: int, y: int, color: tuple[int, int, int]) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x : 3 * x + 3] = bytes(color)

    def line(self, a: tuple[int, int], b: tuple[int, int], color: tuple[int, int, int]) -> None:
        (x0, y0), (x1, y1) = a, b
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, color)
            if (x0, y0) == (x1, y1):
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: tuple[int, int, int], scale: int = 2) -> None:
        """Write `text` with its top-left corner at (x, y); characters the font lacks are skipped."""
        for i, ch in enumerate(text):
            bits = FONT.get(ch.lower())
            if bits is None:
                continue
            for k, bit in enumerate(bits):
                if bit == "1":
                    row, col = divmod(k, 3)
                    for dy in range(scale):
                        for dx in range(scale):
                            self.set(x + i * 4 * scale + col * scale + dx, y + row * scale + dy, color)

    def marker(self, x: int, y: int, color: tuple[int, int, int], r: int = 2) -> None:
        for dx in range(-r, r + 1):
            for dy in range(-r, r + 1):
                self.set(x + dx, y + dy, color)


# A 3x5 pixel font for the labels (digits and the few letters the chart writes), drawn at 2x.
FONT = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "+": "000010111010000",
    "e": "000111111100111",
    "l": "110010010010111",
    "o": "000111101101111",
    "s": "000111110011111",
    "t": "010111010010011",
    "p": "000111101111100",
    "v": "000101101101010",
    "a": "000011101101011",
    " ": "000000000000000",
    "(": "010100100100010",
    ")": "010001001001010",
}


def text_width(text: str, scale: int = 2) -> int:
    return len(text) * 4 * scale


AXIS = (60, 60, 60)
GRID = (225, 225, 225)


def png_chart(series: Sequence[Series], path: str | Path, *, width: int = 800, height: int = 480) -> dict[str, int]:
    """Draw the curves into a PNG at `path`; returns the number of points drawn per series."""
    drawn = [s for s in series if s.points]
    canvas = Canvas(width, height)
    left, right, top, bottom = 90, width - 20, 30, height - 40
    for i in range(5):  # horizontal grid lines
        y = top + round(i * (bottom - top) / 4)
        canvas.line((left, y), (right, y), GRID)
    canvas.line((left, top), (left, bottom), AXIS)
    canvas.line((left, bottom), (right, bottom), AXIS)
    counts = {s.name: len(s.points) for s in series}
    if drawn:
        x0, x1, y0, y1 = _bounds(drawn)

        def at(p: Point) -> tuple[int, int]:
            x = left + round((p[0] - x0) / (x1 - x0) * (right - left))
            y = bottom - round((p[1] - y0) / (y1 - y0) * (bottom - top))
            return x, y

        for i in range(5):  # y labels on the grid lines, x range under the axis
            label = f"{y1 - i * (y1 - y0) / 4:.4g}"
            canvas.text(left - 8 - text_width(label), top + round(i * (bottom - top) / 4) - 5, label, AXIS)
        canvas.text(left, bottom + 10, f"{x0:g}", AXIS)
        canvas.text(right - text_width(f"{x1:g}"), bottom + 10, f"{x1:g}", AXIS)
        canvas.text((left + right - text_width("step")) // 2, bottom + 10, "step", AXIS)
        legend_x = left + 10
        for s in drawn:
            canvas.marker(legend_x, 14, s.color, r=3)
            canvas.text(legend_x + 10, 9, s.name, s.color)
            legend_x += text_width(s.name) + 40
        for s in drawn:
            pts = [at(p) for p in s.points if all(math.isfinite(v) for v in p)]
            for a, b in zip(pts, pts[1:]):
                canvas.line(a, b, s.color)
            for x, y in pts:
                canvas.marker(x, y, s.color)
    text = {"Software": "trainctl", "trainctl:points": ",".join(f"{k}={v}" for k, v in counts.items())}
    Path(path).write_bytes(encode_png(canvas.rows, width, height, text))
    return counts
