"""Small text helpers shared by the panels: every value has a readable form, including "unknown"."""

from __future__ import annotations

MISSING = "--"


def num(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """Format a number, or `--` when the actor does not know it (None)."""
    if value is None:
        return MISSING
    return f"{value:{spec}}{unit}"


def ago(seconds: float | None) -> str:
    """Age in a compact, human form: 4.2 s, 3 min, 2 h."""
    if seconds is None:
        return "never"
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def clip(text: str, width: int) -> str:
    """`text` in at most `width` characters, an ellipsis where it was cut (`OSError: [Errno 28] No s…`)."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + "…" if width > 0 else ""


def tail(text: str, width: int, sep: str = "/") -> str:
    """`text` cut to `width` characters from the left, at a `sep` when one is left (`…/run3/episodes`):
    the end of a path says most."""
    if len(text) <= width:
        return text
    if width <= 0:
        return ""
    kept = text[len(text) - width + 1 :]
    cut = kept.find(sep, 1) if sep else -1
    return "…" + (kept[cut:] if cut > 0 else kept)
