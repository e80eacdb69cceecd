"""The learner's spool: every accepted rollout on disk (fsynced) before the actor hears OK, until a
checkpoint covers the update that trained it. A kill -9 at any moment loses no accepted episode, and a
resumed learner trains each exactly once (docs/runtime.md, "Hostile input and stops")."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from app.learner.validate import Key

log = logging.getLogger("pirl.learner.spool")


class RolloutSpool:
    """Accepted rollouts on disk until a checkpoint holds what was trained on them.

    One file per rollout under `root` (`<seq>.rollout`: the payload exactly as received, a weights-only
    torch payload), written to a temporary name, fsynced, renamed and the folder fsynced before the
    service acknowledges the rollout. The learner removes a file once the rollout was trained (or dropped
    as stale) and a checkpoint that includes that update was written (`remove`); a resumed learner
    re-reads what is left (`entries`) and trains it. A kill -9 at any moment loses nothing acknowledged:
    either the file is complete (trained by the next learner; the actor's re-send is a duplicate) or the
    actor got no OK (it re-sends).
    """

    SUFFIX = ".rollout"

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._names: dict[Key, str] = {}  # key -> file, for rollouts written or loaded by this process
        self._seq = 0
        if self.root.is_dir():
            for tmp in self.root.glob(".*.tmp"):  # a write cut off before its rename: never acknowledged
                tmp.unlink(missing_ok=True)
            seqs = [int(p.stem) for p in self.root.glob(f"*{self.SUFFIX}") if p.stem.isdigit()]
            self._seq = max(seqs, default=-1) + 1

    def write(self, key: Key, payload: bytes) -> str:
        """Store one payload durably; returns its file name."""
        with self._lock:
            seq, self._seq = self._seq, self._seq + 1
        name = f"{seq:012d}{self.SUFFIX}"
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / name)
            _fsync_dir(self.root)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._names[key] = name
        return name

    def entries(self) -> list[tuple[str, bytes]]:
        """(file name, payload) of every stored rollout, oldest first."""
        if not self.root.is_dir():
            return []
        files = sorted(p for p in self.root.glob(f"*{self.SUFFIX}") if p.stem.isdigit())
        return [(p.name, p.read_bytes()) for p in files]

    def adopt(self, key: Key, name: str) -> None:
        """Remember which file holds `key` (a rollout loaded from the spool)."""
        with self._lock:
            self._names[key] = name

    def name_of(self, key: Key) -> str | None:
        """The file of an accepted rollout (None: not spooled, e.g. put on the queue by a test)."""
        with self._lock:
            return self._names.get(key)

    def discard(self, key: Key) -> None:
        """Delete the file of a rollout that was not accepted after all (its caller went away)."""
        with self._lock:
            name = self._names.pop(key, None)
        if name is not None:
            self.remove([name])

    def remove(self, names: Iterable[str]) -> None:
        """Delete files (trained and checkpointed, or unusable); missing ones are fine."""
        names = list(names)
        with self._lock:
            gone = set(names)
            self._names = {k: n for k, n in self._names.items() if n not in gone}
        for name in names:
            (self.root / name).unlink(missing_ok=True)
        if names and self.root.is_dir():
            _fsync_dir(self.root)

    def reject(self, name: str) -> None:
        """Set aside a stored payload the learner cannot train on (kept as `<name>.rejected`)."""
        path = self.root / name
        if path.exists():
            os.replace(path, path.with_name(name + ".rejected"))
            _fsync_dir(self.root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
