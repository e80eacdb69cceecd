"""Atomic learner checkpoints: a reader never sees a half-written one, a crash or Ctrl-C loses nothing.

Layout under `<output_dir>/checkpoints/`:

    000012/              one finished checkpoint per saved policy version (zero-padded, sorts by age)
      state.pt           torch.save of the learner's state (tensors and plain containers only: it is loaded
                         back with weights_only=True). The learner stores the policy's TRAINABLE tensors,
                         optimiser, trainer version and RNG (app/rl/checkpoint_state.py), never the frozen
                         base, which is rebuilt from the run config and checked by digest
      meta.json          version, step counters, weight digests, config; written last
      pretrained_model/  LeRobot-style policy folder (for `pirl eval` / LeRobot tools): the learner writes
                         it into the final checkpoint (and into every one with learner.save_pretrained=every)
    LAST                 name of the newest finished checkpoint (replaced atomically)

A save writes everything into `.tmp-<name>-<pid>/`, fsyncs each file and the folder, renames the folder
into place (atomic on POSIX), fsyncs the parent, then replaces `LAST` the same way and prunes all but the
newest `keep`. If the process dies at any point, the previous checkpoint and `LAST` are intact; stale
`.tmp-*` folders are removed by the next save. The learner turns SIGINT/SIGTERM into a shutdown flag that
is only checked between steps, so Ctrl-C never interrupts a save (it triggers a final one instead).
`add_folder` adds a folder (e.g. `pretrained_model/`) to a finished checkpoint the same way: written under a
temporary name, fsynced, renamed into place; a crash leaves the checkpoint as it was.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("pirl.learner.checkpoint")

STATE_FILE = "state.pt"
META_FILE = "meta.json"
LAST_FILE = "LAST"
PRETRAINED_DIR = "pretrained_model"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


class CheckpointManager:
    def __init__(self, root: Path, keep: int = 3):
        if keep < 1:
            raise ValueError(f"checkpoint keep={keep}: must keep at least one checkpoint")
        self.root = Path(root)
        self.keep = keep

    def save(
        self,
        version: int,
        state: dict[str, Any],
        meta: dict[str, Any],
        write_extra: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write one checkpoint atomically and return its final path.

        `state` may hold tensors, numbers, strings and nested dicts/lists/tuples of them (e.g. optimiser
        state dicts). `write_extra(folder)` may add files (e.g. a LeRobot `pretrained_model/`).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        name = f"{int(version):06d}"
        final = self.root / name
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        torch.save(state, tmp / STATE_FILE)
        if write_extra is not None:
            write_extra(tmp)
        (tmp / META_FILE).write_text(json.dumps({"version": int(version), **meta}, indent=2, default=str))
        _fsync_tree(tmp)
        if final.exists():  # re-saving the same version (e.g. final save right after a periodic one)
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_path(self.root)
        self._write_last(name)
        self._prune()
        log.info("checkpoint saved: %s", final)
        return final

    def add_folder(self, checkpoint: Path, name: str, write: Callable[[Path], None]) -> Path:
        """Add folder `name`, written by `write(folder)`, to the finished `checkpoint` atomically."""
        checkpoint = Path(checkpoint)
        if not (checkpoint / META_FILE).is_file():
            raise FileNotFoundError(f"{checkpoint} is not a finished pirl checkpoint (no {META_FILE})")
        for stale in checkpoint.glob(f".tmp-{name}-*"):  # left by a process killed while adding it
            shutil.rmtree(stale, ignore_errors=True)
        tmp = checkpoint / f".tmp-{name}-{os.getpid()}"
        write(tmp)
        _fsync_tree(tmp)
        final = checkpoint / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_path(checkpoint)
        log.info("checkpoint %s: added %s", checkpoint, name)
        return final

    def latest(self) -> Path | None:
        """The newest finished checkpoint: the one `LAST` names, else the newest complete folder."""
        last = self.root / LAST_FILE
        if last.is_file():
            candidate = self.root / last.read_text().strip()
            if (candidate / META_FILE).is_file():
                return candidate
        done = self.finished()
        return done[-1] if done else None

    def finished(self) -> list[Path]:
        """Finished checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(
            p for p in self.root.iterdir() if p.is_dir() and p.name.isdigit() and (p / META_FILE).is_file()
        )

    @staticmethod
    def load(path: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
        """(state, meta) of one checkpoint; state is loaded weights-only (no pickle execution)."""
        path = Path(path)
        if not (path / META_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a finished pirl checkpoint (no {META_FILE})")
        state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
        meta = json.loads((path / META_FILE).read_text())
        return state, meta

    def _write_last(self, name: str) -> None:
        tmp = self.root / f".{LAST_FILE}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / LAST_FILE)
        _fsync_path(self.root)

    def _prune(self) -> None:
        done = self.finished()
        for old in done[: max(0, len(done) - self.keep)]:
            shutil.rmtree(old, ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        for p in self.root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
