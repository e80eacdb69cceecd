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
