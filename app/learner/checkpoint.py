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

A save of a big policy (a VLA's optimiser state, a whole `pretrained_model/`) can take many seconds, in
which the learner prints nothing else: one that is still writing after SLOW_SAVE_S logs a start line, and
then a done line with the size written and the seconds it took (`_timed`). Quick saves stay one line.

Non-finite weights are never saved: `save` refuses a state whose trainable weights (`state["trainable"]`)
hold NaN or inf (`NonFiniteWeightsError`, before anything is written), so the
kept checkpoints are never all poisoned. Damage is an error, never a traceback or an unpickle: `load` names
the file and what is wrong (`DamagedCheckpointError`: meta.json missing, not JSON or lacking a key; state.pt
missing, empty, truncated, not a torch file, or a pickle that is not weights-only: refused unread), and
`load_newest_intact` tries the checkpoints newest first (by version), warns once per skipped one and raises
`NoIntactCheckpointError` (a ValueError: one line, exit 2) when none loads.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from app.rl.digests import weights_digest
from app.run.sections import CHECKPOINT_META, CHECKPOINT_STATE, LAST_FILE

log = logging.getLogger("pirl.learner.checkpoint")

STATE_FILE = CHECKPOINT_STATE
META_FILE = CHECKPOINT_META
# state entries that hold the policy's weights: the trainable tensors (refused by `save` when not finite)
# and, in checkpoints of the earlier layout (format 1), the whole state dict (buffers may be inf there)
WEIGHT_KEYS = ("trainable", "policy")
# what the learner's resume reads (app/learner/loop.py `_save`): a checkpoint without one is damaged
RESUME_META_KEYS = ("updates", "env_steps", "episodes", "run_id")
RESUME_STATE_KEYS = ("algorithm", "generator")
# A save still writing after this many seconds logs a start line, and a done line with size and time.
SLOW_SAVE_S = 1.0

T = TypeVar("T")


class DamagedCheckpointError(ValueError):
    """A checkpoint file is missing or unreadable; `file` is the path, `reason` what is wrong with it."""

    def __init__(self, file: Path, reason: str):
        self.file, self.reason = Path(file), reason
        super().__init__(f"checkpoint file {file} is damaged: {reason}")


class NoIntactCheckpointError(ValueError):
    """Resume found checkpoints but none of them loads."""


class NonFiniteWeightsError(ValueError):
    """`save` refused weights holding NaN or inf; nothing was written."""


def non_finite_tensors(tree: Any, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating tensors in a nested dict/list that hold a NaN or an inf."""
    if isinstance(tree, torch.Tensor):
        if (tree.is_floating_point() or tree.is_complex()) and not bool(torch.isfinite(tree).all()):
            return [prefix or "<tensor>"]
        return []
    if isinstance(tree, Mapping):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return []
    out: list[str] = []
    for key, value in items:
        out += non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    return out


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


def _tree_bytes(root: Path) -> int:
    """Bytes in the files under `root` (0 when it is gone)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:  # removed meanwhile
                continue
    return total


@contextmanager
def _timed(what: str, folder: Path, slow_s: float | None = None) -> Iterator[None]:
    """Around a save into `folder`: if it is still running after `slow_s` (SLOW_SAVE_S), log "<what>: saving ..." and,
    when it ends, "<what>: saved <MB> in <s> s" (the size of `folder` then). A save that finishes sooner
    logs neither; the done line (or a failure line) comes exactly when the start line came."""
    slow_s = SLOW_SAVE_S if slow_s is None else slow_s
    t0 = time.monotonic()
    started = threading.Event()

    def start() -> None:
        started.set()
        log.info("%s: saving (still writing after %.0f s) ...", what, slow_s)

    timer = threading.Timer(slow_s, start)
    timer.daemon = True
    timer.start()
    done = False
    try:
        yield
        done = True
    finally:
        timer.cancel()
        timer.join()
        if started.is_set():
            seconds = time.monotonic() - t0
            if done:
                log.info("%s: saved %.1f MB in %.1f s", what, _tree_bytes(folder) / 1e6, seconds)
            else:
                log.warning("%s: save failed after %.1f s", what, seconds)


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
        Raises `NonFiniteWeightsError` (nothing written, the previous checkpoints stay) when the trainable
        weights (`state["trainable"]`) hold a NaN or an inf.
        """
        bad = non_finite_tensors({WEIGHT_KEYS[0]: state.get(WEIGHT_KEYS[0], {})})
        if bad:
            newest = self.latest()
            raise NonFiniteWeightsError(
                f"refused to save checkpoint v{int(version)}: {len(bad)} weight tensor(s) hold NaN or inf "
                f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); the previous checkpoints stay "
                f"(newest: {newest if newest is not None else 'none'})"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        name = f"{int(version):06d}"
        final = self.root / name
        tmp = self.root / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        with _timed(f"checkpoint {final}", final):
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
        final = checkpoint / name
        with _timed(f"checkpoint {checkpoint}: {name}", final):
            write(tmp)
            _fsync_tree(tmp)
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

    def candidates(self) -> list[Path]:
        """Every checkpoint folder (`<digits>/`, finished or not), newest version first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and p.name.isdigit()]
        return sorted(found, key=lambda p: (int(p.name), p.name), reverse=True)

    def load_newest_intact(
        self, restore: Callable[[Path], T], warn: Callable[[str], None] | None = None
    ) -> tuple[Path, T]:
        """`(path, restore(path))` for the newest checkpoint `restore` accepts, trying them newest version
        first. `restore` raises `DamagedCheckpointError` for a checkpoint that cannot be used (`load` does);
        each skipped one is one warning line naming the file and why, also a `LAST` that names a missing or
        unfinished folder. Raises FileNotFoundError when there is no checkpoint at all and
        `NoIntactCheckpointError` when none is intact. Other errors (e.g. a checkpoint of another policy)
        propagate: an older checkpoint of the same run would not fit either."""
        say = warn or log.warning
        found = self.candidates()
        last = self.root / LAST_FILE
        if last.is_file():
            named = last.read_text(errors="replace").strip()
            if not (self.root / named / META_FILE).is_file():
                say(
                    f"{last} names {named[:40]!r}, which is missing or unfinished; "
                    "trying the checkpoints newest first"
                )
        if not found:
            raise FileNotFoundError(f"{self.root} holds no checkpoint")
        reasons = []
        for path in found:
            try:
                return path, restore(path)
            except DamagedCheckpointError as err:
                say(f"skipped checkpoint {path.name}: {err.file} {err.reason}")
                reasons.append(f"{path.name}/{err.file.name} {err.reason}")
        raise NoIntactCheckpointError(
            f"no intact checkpoint in {self.root} ({len(found)} tried, newest first: {'; '.join(reasons[:3])}"
            f"{' ...' if len(reasons) > 3 else ''}); move the damaged folders away (or restore them from a "
            "backup) and resume again, or start a fresh run in another --learner.output_dir"
        )

    @staticmethod
    def load(
        path: Path,
        map_location: str | torch.device = "cpu",
        meta_keys: Sequence[str] = (),
        state_keys: Sequence[str] = (),
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(state, meta) of one checkpoint; state is loaded weights-only (a pickle that needs more than
        tensors and plain containers is refused unread). Raises `DamagedCheckpointError` naming the file
        when meta.json or state.pt is missing, empty, truncated or not what a save writes, or when a key of
        `meta_keys` / `state_keys` is missing."""
        path = Path(path)
        meta = _read_meta(path / META_FILE)
        missing = [k for k in meta_keys if k not in meta]
        if missing:
            raise DamagedCheckpointError(path / META_FILE, f"no {', '.join(missing)}")
        state = _read_state(path / STATE_FILE, map_location)
        missing = [k for k in state_keys if k not in state]
        if missing:
            raise DamagedCheckpointError(path / STATE_FILE, f"holds no {', '.join(missing)}")
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
        """Delete all but the newest `keep` finished checkpoints. Each is first renamed to a `.tmp-` name
        (atomic), so a process killed while deleting leaves no half-deleted checkpoint folder, only a
        temporary one that the next save removes; numbered folders without meta.json older than the
        newest finished one (left by an older version of this code) go too."""
        done = self.finished()
        if not done:
            return
        old = done[: max(0, len(done) - self.keep)]
        newest = int(done[-1].name)
        old += [p for p in self.candidates() if int(p.name) < newest and not (p / META_FILE).is_file()]
        for path in old:
            trash = self.root / f".tmp-pruned-{path.name}-{os.getpid()}"
            try:
                os.rename(path, trash)
            except OSError:
                continue
            shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_temps(self) -> None:
        for p in self.root.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(f".{LAST_FILE}.tmp-*"):  # a LAST write cut off before its rename
            p.unlink(missing_ok=True)


def _read_meta(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise DamagedCheckpointError(file, "is missing (not a finished checkpoint)")
    try:
        meta = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DamagedCheckpointError(file, f"is not JSON ({_short(err)})") from None
    if not isinstance(meta, dict):
        raise DamagedCheckpointError(file, f"is not a JSON object (a {type(meta).__name__})")
    return meta


def _read_state(file: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        size = file.stat().st_size
    except OSError:
        raise DamagedCheckpointError(file, "is missing") from None
    if size == 0:
        raise DamagedCheckpointError(file, "is empty")
    with open(file, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither torch's zip format nor a (legacy) pickle
        raise DamagedCheckpointError(file, f"is not a torch checkpoint (starts with {head!r})")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # the weights-only unpickler refused it: nothing of it was run
        raise DamagedCheckpointError(
            file, "holds pickled objects, not only tensors (refused unread)"
        ) from None
    except Exception as err:  # noqa: BLE001 - garbage fails in many ways (RuntimeError, EOFError, IndexError, ...)
        raise DamagedCheckpointError(
            file, f"is truncated or not a torch checkpoint ({_short(err)})"
        ) from None
    if not isinstance(state, dict):
        raise DamagedCheckpointError(file, f"holds a {type(state).__name__}, not a state dict")
    return state


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def check_learner_checkpoint(
    path: Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any], tuple[int, int, int, str]]:
    """(state, meta, (updates, env_steps, episodes, run_id)) of a learner checkpoint, checked before anything
    is loaded into a policy: the keys resume reads, counters that are integers, weights that are present,
    finite and (format 2) match meta.json's `weights_digest`. `DamagedCheckpointError` names the file."""
    path = Path(path)
    state, meta = CheckpointManager.load(path, map_location, RESUME_META_KEYS, RESUME_STATE_KEYS)
    meta_file, state_file = path / META_FILE, path / STATE_FILE
    try:
        counters = tuple(int(meta[k]) for k in RESUME_META_KEYS[:3])
        if any(type(meta[k]) is not int or meta[k] < 0 for k in RESUME_META_KEYS[:3]):
            raise ValueError("not a non-negative integer")
    except (TypeError, ValueError) as err:
        raise DamagedCheckpointError(meta_file, f"bad counters ({err})") from None
    weights = state.get(WEIGHT_KEYS[0], state.get(WEIGHT_KEYS[1]))
    if (
        not isinstance(weights, dict)
        or not weights
        or not all(isinstance(t, torch.Tensor) for t in weights.values())
    ):
        raise DamagedCheckpointError(state_file, "holds no weight tensors")
    bad = non_finite_tensors(state.get(WEIGHT_KEYS[0], {}))
    if bad:
        raise DamagedCheckpointError(state_file, f"weights hold NaN or inf ({', '.join(bad[:3])})")
    if WEIGHT_KEYS[0] in state:
        recorded = meta.get("weights_digest")
        if not isinstance(recorded, str):
            raise DamagedCheckpointError(meta_file, "no weights_digest")
        digest = weights_digest(weights)
        if digest != recorded:
            raise DamagedCheckpointError(
                state_file, f"weights digest {digest} is not the {recorded} its meta.json records"
            )
    return state, meta, (*counters, str(meta["run_id"]))  # type: ignore[return-value]
