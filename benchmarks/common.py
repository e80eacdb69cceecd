"""What every benchmark prints around its table: the command that produced it and the machine it ran on.

docs/benchmarks.md pastes these blocks verbatim, so a number in the docs always comes with the exact
command line and hardware needed to reproduce (or dispute) it.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence


def machine_line() -> str:
    """One line naming the CPU, core count, RAM, OS and torch build (and GPU if there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    gpu = ""
    try:
        import torch

        tv = f"torch {torch.__version__}"
        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        tv = "no torch"
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load avg {os.getloadavg()[0]:.1f} at start"
    return f"{cpu}, {os.cpu_count()} cores{mem}{gpu}, {platform.system()} {platform.release()}, {tv}{load}"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as a user would type it from the repo root."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0]
    if script.endswith(".py"):
        script = os.path.relpath(script)
        return shlex.join([".venv/bin/python", script, *argv[1:]])
    return shlex.join(argv)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed as given (format them before).

    Hand-written rather than rich's `Table(box=box.MARKDOWN)`: rich reads `[...]` in a cell as markup (a
    range like `[0.3, 0.8]` would vanish), pads blank lines around the table and wraps at the console's
    width, and this is the exact text docs/benchmarks.md pastes."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    lines = [fmt(cells[0]), "| " + " | ".join("-" * w for w in widths) + " |"]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def report(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], notes: str = "") -> str:
    """The block docs/benchmarks.md pastes: title, command, machine, date, table, notes."""
    parts = [
        f"### {title}",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        markdown_table(header, rows),
    ]
    if notes:
        parts += ["", notes]
    return "\n".join(parts)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) without numpy, so tiny runs stay exact and readable."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]
