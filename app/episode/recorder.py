"""Record rollouts (policy and human steps alike) as a LeRobot dataset, one episode at a time, crash-safe.

Evaluation episodes, training episodes and takeovers are data: written as a `LeRobotDataset` (LeRobot 0.6
format: parquet frames, mp4 videos per camera, meta/info.json, episode and task tables) they can be
re-opened with `LeRobotDataset(repo_id, root=...)`, viewed with `lerobot-dataset-viz`, edited with
LeRobot's tools, or cloned with `pirl bc`. `pirl eval --record.*` and the actor's `--actor.record.*`
(app/episode/record_config.py) both write through here.

Each frame is one control step: the observation the action was chosen from (`observation.state`, named
like the robot's features, and `observation.images.<cam>` when cameras are recorded), the action that was
actually applied after the safety layer (`action`, "<motor>.pos" in robot units), who drove it
(`intervention`: True when a human or the scripted expert did, the same feature LeRobot's DAgger rollouts
write), and the step's outcome: `next.reward`, `next.done`, `next.success`. Cameras are stored as videos
(`RecordConfig.vcodec`, AV1 by default); PNG frames in the parquet files when `video` is off or the codec
cannot encode here (one warning line says so).

Frames go to LeRobot's episode buffer as they come, one step late: the last frame is held until the
episode's verdict is known (on a real arm the operator says "success" after the last step, and that
verdict belongs on the last frame: `next.success`, and `next.reward` gets the success reward). A discarded
episode (operator re-record, interrupted run) never reaches the dataset.

Crash safety. LeRobot keeps a dataset's parquet files open across episodes and writes their footers only
in `finalize()`: a process killed before that leaves files no reader opens. Here every episode gets files
of its own (data, episode table, one video per camera: the dataset's file-size limits are set to one byte,
LeRobot's own roll-over to the next file) and they are closed as soon as the episode is saved. Around each
save a small journal (`.pirl_saving/`: the metadata files and the list of data files before it) makes the
save all-or-nothing: opening the folder again (`repair`, done by every recorder that appends) rolls an
interrupted save back and drops the frames of an unfinished episode, so a crash loses at most the episode
in progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.episode.record_config import ActorRecordConfig, RecordConfig

__all__ = ["INTERVENTION", "ActorRecordConfig", "EpisodeRecorder", "RecordConfig", "RecordError", "repair"]

log = logging.getLogger("pirl.record")

INTERVENTION = "intervention"
JOURNAL = ".pirl_saving"  # present while an episode is being saved (see the module docstring)
_JOURNAL_TMP = ".pirl_saving.tmp"  # a journal being written (not yet in force)
_JOURNAL_DONE = ".pirl_saving.done"  # a committed journal being deleted
_META_FILES = ("info.json", "stats.json", "tasks.parquet")  # under meta/: rewritten in place by a save
_DATA_DIRS = ("data", "meta/episodes", "videos")  # a save only adds files here
_IMAGE_SHAPE_NAMES = ["height", "width", "channels"]
# Data and video file-size limit (MB) of a recorded dataset: every episode starts new files (LeRobot's
# roll-over), so closing them after the save makes that episode final without touching earlier ones.
FILE_PER_EPISODE_MB = 1e-6


class RecordError(ValueError):
    """A recording that cannot start (the message is one line, with what to do)."""


class EpisodeRecorder:
    """Frames in (`add`), one LeRobot episode per `end_episode`; `close()` finalises. See the module
    docstring. `option` names the config section in error messages (`--record`, `--actor.record`)."""

    def __init__(
        self,
        cfg: RecordConfig,
        fps: int,
        state_names: Sequence[str],
        action_names: Sequence[str],
        image_shapes: Mapping[str, tuple[int, int, int]] | None = None,
        robot_type: str | None = None,
        *,
        option: str = "--record",
    ) -> None:
        if cfg.root is None:
            raise RecordError(f"EpisodeRecorder needs {option}.root (the dataset folder to write)")
        if not cfg.task:
            raise RecordError(f"EpisodeRecorder needs {option}.task (LeRobot stores one task per frame)")
        # Without a loadable torchcodec LeRobot warns (with a traceback) on every open and falls back to
        # pyav, which decodes the videos fine; SVT-AV1 prints its banner per video unless told not to.
        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
        os.environ.setdefault("SVT_LOG", "1")
        import datasets

        datasets.disable_progress_bars()  # one "Map" bar per saved episode otherwise

        self.root = Path(cfg.root)
        self.repo_id = cfg.repo_id
        self.task = cfg.task
        self.fps = int(fps)
        self.robot_type = robot_type
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.image_keys = list(image_shapes or {})
        self.option = option
        existing = self._prepare_root(cfg)
        self.encoder = self._video_encoder(cfg, existing) if self.image_keys else None
        self.features = self._features(image_shapes or {}, video=self.encoder is not None)
        if existing is not None:
            self._check_matches(existing)
        self.frames = 0  # frames written by this recorder (saved episodes only)
        self.episodes = 0  # episodes written by this recorder
        self._held: dict[str, Any] | None = None  # the newest frame, waiting for the next or the verdict
        self._buffered = 0  # frames of the episode in progress already in LeRobot's buffer
        self._saving = False
        self._closed = False
        self.dataset: Any = self._open(create=existing is None)

    # ---------------------------------------------------------------------------------- recording

    def add(
        self,
        observation: Mapping[str, Any],
        action: Mapping[str, float],
        intervention: bool,
        reward: float,
        done: bool,
        success: bool,
    ) -> None:
        """One control step: the observation it acted on, the applied action and the step's outcome."""
        frame: dict[str, Any] = {
            "observation.state": np.array([float(observation[k]) for k in self.state_names], np.float32),
            "action": np.array([float(action[k]) for k in self.action_names], np.float32),
            INTERVENTION: np.array([bool(intervention)]),
            "next.reward": np.array([float(reward)], np.float32),
            "next.done": np.array([bool(done)]),
            "next.success": np.array([bool(success)]),
            "task": self.task,
        }
        for key in self.image_keys:  # a copy: camera drivers may reuse their buffers
            frame[f"observation.images.{key}"] = np.array(observation[key], dtype=np.uint8, copy=True)
        if self._held is not None:
            self._push(self._held)
        self._held = frame

    @property
    def pending(self) -> int:
        """Frames of the episode in progress (not yet saved)."""
        return self._buffered + (self._held is not None)

    def end_episode(self, success: bool, success_reward: float | None = None) -> None:
        """Save the episode. `success` is the final verdict: it goes on the last frame (done is set there
        too); when it is a success that the steps did not already reward, `success_reward` is added."""
        last = self._held
        if last is None:
            return
        last["next.done"] = np.array([True])
        if success and not bool(last["next.success"][0]) and success_reward is not None:
            last["next.reward"] = np.array([float(last["next.reward"][0]) + success_reward], np.float32)
        last["next.success"] = np.array([bool(success)])
        self._push(last)
        self._held = None
        self._save()

    def discard_episode(self) -> None:
        """Drop the episode in progress (re-record, interrupted run)."""
        self._held = None
        if self._buffered and self.dataset is not None:
            self.dataset.clear_episode_buffer(delete_images=True)
        self._buffered = 0

    def close(self) -> None:
        """Drop an unfinished episode and finalise the files. Safe to call twice; after an interrupted
        save (an exception or a second Ctrl-C inside `end_episode`) it rolls that episode back."""
        if self._closed:
            return
        self._closed = True
        ds, self.dataset = self.dataset, None
        if ds is not None:
            if not self._saving:
                with contextlib.suppress(Exception):
                    self._held = None
                    if self._buffered:
                        ds.clear_episode_buffer(delete_images=True)
                ds.finalize()
            else:  # the writer's state is half an episode: close its files, then undo that episode
                with contextlib.suppress(Exception):
                    ds.finalize()
        if self._saving or (self.root / JOURNAL).exists():
            repair(self.root)
        _remove_frame_leftovers(self.root)

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- internals

    def _push(self, frame: dict[str, Any]) -> None:
        self.dataset.add_frame(frame)
        self._buffered += 1

    def _save(self) -> None:
        """Save the buffered episode under the journal and close its files (they are final then)."""
        import datasets

        n = self._buffered
        _begin_journal(self.root)
        self._saving = True
        datasets.disable_progress_bars()  # LeRobot turns them back on after each metadata load
        self.dataset.save_episode()
        # Its data and episode-table parquet files get their footers now, not at finalize() (LeRobot 0.6.1
        # has no public call for the episode table's writer).
        self.dataset.writer.close_writer()
        self.dataset.meta._close_writer()
        _commit_journal(self.root)
        self._saving = False
        self._buffered = 0
        self.frames += n
        self.episodes += 1

    def _open(self, create: bool) -> Any:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        # Writing PNGs in threads keeps the control loop free of image encoding (lerobot-record's way).
        threads = 2 * len(self.image_keys)
        if create:
            ds = LeRobotDataset.create(
                repo_id=self.repo_id,
                fps=self.fps,
                features=self.features,
                root=self.root,
                robot_type=self.robot_type,
                use_videos=self.encoder is not None,
                rgb_encoder=self.encoder,
                image_writer_threads=threads,
            )
        else:
            ds = LeRobotDataset.resume(
                self.repo_id, root=self.root, rgb_encoder=self.encoder, image_writer_threads=threads
            )
        # One file per episode from here on, also in a dataset an older recorder wrote (saved with the
        # next episode's info.json).
        ds.meta.info.data_files_size_in_mb = FILE_PER_EPISODE_MB
        ds.meta.info.video_files_size_in_mb = FILE_PER_EPISODE_MB
        return ds

    def _prepare_root(self, cfg: RecordConfig) -> dict[str, Any] | None:
        """Clear, check or repair the folder. Returns the existing dataset's info.json when appending."""
        root = self.root
        if not root.exists() or (root.is_dir() and not any(root.iterdir())):
            if root.exists():
                root.rmdir()  # LeRobot creates the folder itself
            return None
        if cfg.overwrite:
            shutil.rmtree(root)
            return None
        info_path = root / "meta" / "info.json"
        if not cfg.append:
            raise RecordError(
                f"dataset folder {root} already exists; choose a new {self.option}.root, or pass "
                f"{self.option}.append=true (add episodes) or {self.option}.overwrite=true (replace it)"
            )
        if not info_path.is_file():
            raise RecordError(
                f"{root} exists but is not a LeRobot dataset (no meta/info.json); choose a new "
                f"{self.option}.root"
            )
        fixed = repair(root)
        if fixed:
            log.warning("dataset %s: %s", root, "; ".join(fixed))
        return json.loads(info_path.read_text())

    def _video_encoder(self, cfg: RecordConfig, existing: dict[str, Any] | None) -> Any:
        """The RGB encoder config, or None for PNG frames (video off, or the codec cannot encode here)."""
        from lerobot.configs.video import RGBEncoderConfig

        if existing is not None:  # appending: the dataset's own storage and codec
            cams = [existing["features"].get(f"observation.images.{k}", {}) for k in self.image_keys]
            if any(c.get("dtype") == "image" for c in cams):
                return None
            for cam in cams:
                with contextlib.suppress(ValueError, TypeError):
                    if cam.get("info"):
                        return RGBEncoderConfig.from_video_info(cam["info"])
        if not cfg.video:
            return None
        try:
            return RGBEncoderConfig(vcodec=cfg.vcodec)
        except (ValueError, ImportError) as err:
            log.warning("video codec %r unavailable (%s): storing camera frames as PNG", cfg.vcodec, err)
            return None

    def _features(self, image_shapes: Mapping[str, tuple[int, int, int]], video: bool) -> dict[str, Any]:
        features: dict[str, dict[str, Any]] = {
            "observation.state": {
                "dtype": "float32",
                "shape": (len(self.state_names),),
                "names": list(self.state_names),
            },
            "action": {
                "dtype": "float32",
                "shape": (len(self.action_names),),
                "names": list(self.action_names),
            },
            INTERVENTION: {"dtype": "bool", "shape": (1,), "names": None},
            "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
            "next.done": {"dtype": "bool", "shape": (1,), "names": None},
            "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        }
        for key, shape in image_shapes.items():
            features[f"observation.images.{key}"] = {
                "dtype": "video" if video else "image",
                "shape": tuple(int(s) for s in shape),
                "names": list(_IMAGE_SHAPE_NAMES),
            }
        return features

    def _check_matches(self, info: dict[str, Any]) -> None:
        """Appending: the dataset must hold the same features at the same rate as this run records."""

        def spec(features: Mapping[str, Any]) -> dict[str, tuple]:
            return {
                k: (f["dtype"], tuple(f["shape"]), f.get("names"))
                for k, f in features.items()
                if k not in ("timestamp", "frame_index", "episode_index", "index", "task_index")
            }

        have, want = spec(info.get("features", {})), spec(self.features)
        diff = sorted(k for k in have.keys() | want.keys() if have.get(k) != want.get(k))
        if int(info.get("fps", 0)) != self.fps:
            diff.insert(0, f"fps {info.get('fps')} != {self.fps}")
        if diff:
            raise RecordError(
                f"dataset {self.root} was recorded with other features ({', '.join(diff[:4])}); choose a "
                f"new {self.option}.root"
            )


# ------------------------------------------------------------------------------------ the journal


def _data_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for sub in _DATA_DIRS for p in (root / sub).rglob("*") if p.is_file()
    )


def _begin_journal(root: Path) -> None:
    """Snapshot what a save rewrites (meta files) and the data files that exist before it."""
    tmp = root / _JOURNAL_TMP
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name in _META_FILES:
        src = root / "meta" / name
        if src.is_file():
            shutil.copy2(src, tmp / name)
    (tmp / "files.json").write_text(json.dumps(_data_files(root)))
    os.replace(tmp, root / JOURNAL)  # in force from here


def _commit_journal(root: Path) -> None:
    done = root / _JOURNAL_DONE
    if done.exists():
        shutil.rmtree(done)
    os.replace(root / JOURNAL, done)  # committed from here
    shutil.rmtree(done)


def _remove_frame_leftovers(root: Path) -> bool:
    """Temporary PNG frames and encoder folders of an episode that was never saved."""
    found = False
    leftovers = [root / "images", *(p for p in root.glob("tmp*") if p.is_dir())]
    for path in leftovers:
        if path.is_dir():
            found = found or any(p.is_file() for p in path.rglob("*"))
            shutil.rmtree(path)
    return found


def repair(root: str | Path) -> list[str]:
    """Make a dataset folder that a recorder left behind valid again: roll back an episode whose save
    was interrupted (the journal is still there) and delete the frames of an unfinished episode. Returns
    what it did (empty: nothing to do). Safe on any folder the recorder wrote, and idempotent."""
    root = Path(root)
    fixed = []
    for name in (_JOURNAL_TMP, _JOURNAL_DONE):  # a journal not yet in force, or already committed
        if (root / name).exists():
            shutil.rmtree(root / name)
    journal = root / JOURNAL
    if journal.is_dir():
        keep = set(json.loads((journal / "files.json").read_text()))
        for rel in _data_files(root):
            if rel not in keep:
                (root / rel).unlink()
        for name in _META_FILES:
            saved, live = journal / name, root / "meta" / name
            if saved.is_file():
                os.replace(saved, live)
            elif live.is_file():
                live.unlink()
        shutil.rmtree(journal)
        fixed.append("rolled back an episode whose save was interrupted")
    if _remove_frame_leftovers(root):
        fixed.append("dropped the frames of an unfinished episode")
    return fixed
