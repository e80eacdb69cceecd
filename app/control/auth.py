"""The control channel's per-run secret: who may command the arm.

The actor (`ControlServer.start`) makes a fresh random token for every run and writes it to a file only
its user can read (mode 0600, in a 0700 directory when the directory is ours to make); the console
(`ControlClient`) reads it from the same path at every connect and presents it in its hello. Anyone on the
machine who can reach the port may still e-stop the arm; only a holder of the token may clear an e-stop,
start episodes or read statuses. Where the file lives: `ControlConfig.token_path`.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_token(path: Path, token: str) -> None:
    """Write `token` to `path` atomically with mode 0600: a temp file created exclusively (so never
    through a planted file or symlink) in the same directory, then renamed over `path`."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_token(path: Path) -> str:
    """The token in `path`; OSError when missing or unreadable, ValueError when empty."""
    token = path.read_text(encoding="ascii", errors="replace").strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token


def remove_token(path: Path, token: str) -> None:
    """Remove `path` if it still holds `token` (another actor may have written its own there since)."""
    with contextlib.suppress(OSError, ValueError):
        if same_token(read_token(path), token):
            path.unlink()


def same_token(given: object, expected: str) -> bool:
    """Constant-time comparison; anything but a non-empty string is wrong."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())
