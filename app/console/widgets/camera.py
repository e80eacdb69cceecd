"""Cameras: live previews drawn with half-block characters, two pixels per terminal cell.

Each cell shows `▀` with the upper pixel as foreground and the lower one as background, which gives
square-ish pixels in an ordinary terminal over SSH. Without colour (NO_COLOR, or a monochrome terminal)
the same image is drawn with an ASCII brightness ramp (contrast-stretched), so the operator still sees
shapes and motion.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.style import Style
from rich.text import Text

from app.console.widgets.panel import Panel
from app.control.protocol import ActorStatus

RAMP = " .:-=+*#%@"  # dark -> bright
# Without colour the frame's own brightness range is stretched over the ramp when it spans at least this
# much (of 255): ten glyph levels are few, and a dim or low-contrast scene would otherwise use three of them
# and lose its shapes. Flatter frames keep absolute brightness, so sensor noise is not blown up.
MIN_CONTRAST = 32.0


def fit(height: int, width: int, cols: int, rows: int, pixels_per_row: int = 2) -> tuple[int, int]:
    """Largest (cols, rows) that shows a height x width image at its aspect ratio inside cols x rows."""
    if height <= 0 or width <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width, rows * pixels_per_row / height)
    return max(1, min(cols, round(width * scale))), max(1, min(rows, round(height * scale / pixels_per_row)))


def _resample(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize (the thumbnail is already averaged; this only picks samples)."""
    h, w = image.shape[:2]
    ys = np.minimum(h - 1, ((np.arange(out_h) + 0.5) * h / out_h).astype(int))
    xs = np.minimum(w - 1, ((np.arange(out_w) + 0.5) * w / out_w).astype(int))
    return image[ys][:, xs]


def render_halfblock(image: np.ndarray, cols: int, rows: int, color: bool = True) -> Text:
    """Render an HxWx3 uint8 image into at most cols x rows cells, keeping its aspect ratio."""
    out = Text(no_wrap=True, overflow="crop")
    c, r = fit(image.shape[0], image.shape[1], cols, rows, 2 if color else 1)
    if c == 0:
        return out
    if not color:
        px = _resample(image, r, c).astype(np.float32)
        luma = px @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        lo, hi = float(luma.min()), float(luma.max())
        if hi - lo >= MIN_CONTRAST:
            luma = (luma - lo) * (255.0 / (hi - lo))
        idx = np.clip((luma / 256.0 * len(RAMP)).astype(int), 0, len(RAMP) - 1)
        out.append("\n".join("".join(RAMP[i] for i in row) for row in idx))
        return out
    px = _resample(image, 2 * r, c)
    for y in range(r):
        top, bottom = px[2 * y], px[2 * y + 1]
        for x in range(c):
            fg, bg = top[x], bottom[x]
            out.append(
                "▀",
                Style(
                    color=Color.from_rgb(int(fg[0]), int(fg[1]), int(fg[2])),
                    bgcolor=Color.from_rgb(int(bg[0]), int(bg[1]), int(bg[2])),
                ),
            )
        if y < r - 1:
            out.append("\n")
    return out


class CameraPanel(Panel):
    TITLE = "cameras"

    def render_status(self, status: ActorStatus) -> Text:
        if not status.cameras:
            return Text("no camera configured", style="dim")
        width = self.inner_width
        rows = max(2, (self.content_size.height or 6) - 1)
        names = sorted(status.cameras)
        each = max(4, (width - (len(names) - 1)) // len(names))
        color = not self.app.no_color
        tiles: list[list[str | Text]] = []
        for name in names:
            thumb = status.cameras[name]
            try:
                image = thumb.to_array()
            except ValueError as exc:
                tiles.append([Text(name[:each]), Text(f"bad frame: {exc}"[:each])])
                continue
            lines = render_halfblock(image, each, rows, color).split("\n")
            tiles.append([Text(name[:each], style="bold"), *lines])
        out = Text(no_wrap=True, overflow="crop")
        height = max(len(t) for t in tiles)
        for y in range(height):
            for i, tile in enumerate(tiles):
                cell = tile[y] if y < len(tile) else Text("")
                cell = cell if isinstance(cell, Text) else Text(cell)
                out.append_text(cell)
                if i < len(tiles) - 1:
                    out.append(" " * (each - cell.cell_len + 1))
            if y < height - 1:
                out.append("\n")
        return out
