"""The highest policy version ever pushed from a learner's output_dir (<output_dir>/pushed_version.json).

Written before any actor can see a version, so a learner resumed from an older checkpoint continues above
every version its actors may have seen (app/learner/loop.py, `_continue_above_pushed`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PUSHED_VERSION_FILE = "pushed_version.json"  # the highest policy version ever pushed from this output_dir


def read_pushed_version(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text())["highest_pushed"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({err}); it records the highest version pushed") from err


def write_pushed_version(path: Path, version: int) -> None:
    """Atomically and durably: a learner killed right after a push still knows about it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps({"highest_pushed": int(version)}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
