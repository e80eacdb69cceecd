"""A progress bar with ETA for a long phase of a command, only where someone watches it.

The bar goes to stderr and shows only when stderr is a terminal (logs, pipes, CI and tests get the
command's own progress lines and nothing else), as `pirl bc` and `pirl eval` do. While it shows, what the
command prints to stdout goes above the bar (tqdm's write), so lines and bar never tear each other.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any


class _Off:
    """What `bar` yields when no bar shows: the same calls, doing nothing."""

    disable = True
    n = 0.0

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass


@contextmanager
def bar(
    total: float | None, desc: str, unit: str = "it", show: bool = True, decimals: int | None = None
) -> Iterator[Any]:
    """A tqdm bar over `total` (None: a counter without ETA) while the block runs; yields it (`update(n)`,
    `set_postfix_str(s)`, `n`). `decimals`: show the count with that many decimals (a running total in
    minutes, not a count of items). No bar, and no tqdm import, when `show` is off or stderr is no
    terminal."""
    if not show or not _is_terminal(sys.stderr):
        yield _Off()
        return
    from tqdm import tqdm
    from tqdm.contrib import DummyTqdmFile

    b = tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
        bar_format=None if decimals is None or total is None else
        f"{{desc}}: {{percentage:3.0f}}%|{{bar}}| {{n:.{decimals}f}}/{{total:g}} {{unit}} "
        "[{elapsed}<{remaining}{postfix}]",
    )  # fmt: skip
    try:
        with redirect_stdout(DummyTqdmFile(sys.stdout)):
            yield b
    finally:
        b.close()


def advance_to(b: Any, value: float) -> None:
    """Move bar `b` forward to `value` (a running total such as robot minutes); never backwards."""
    if value > b.n:
        b.update(value - b.n)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
