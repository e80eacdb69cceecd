"""Record rollouts (policy and human steps alike) as a LeRobot dataset.

Evaluation episodes and takeovers are data: written as a `LeRobotDataset` (LeRobot 0.6 format: parquet
frames, meta/info.json, episode and task tables) they can be re-opened with
`LeRobotDataset(repo_id, root=...)`, inspected or edited with LeRobot's tools, or used for SFT/BC.

Each frame is one control step: the observation the action was chosen from (`observation.state`, named
like the robot's features, and `observation.images.<cam>` when cameras are recorded), the action that was
actually applied after the safety layer (`action`, "<motor>.pos" in robot units), who drove it
(`intervention`: True when a human or the scripted expert did, the same feature LeRobot's DAgger rollouts
write), and the step's outcome: `next.reward`, `next.done`, `next.success`. Images are stored as PNG
frames, so no video encoder is needed.

Frames are held until the episode's verdict is known: on a real arm the operator says "success" after the
last step, and that verdict belongs on the last frame (`next.success`, and `next.reward` gets the success
reward). A discarded episode (operator re-record, interrupted run) never reaches the dataset.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INTERVENTION = "intervention"


@dataclass
class RecordConfig:
    """Where and how `pirl eval` writes its LeRobotDataset."""

    # Folder of the dataset to write (a new dataset; it must not exist unless `overwrite`). None: don't
    # record. Keep it under outputs/ so it stays out of git.
    root: str | None = None
    # Dataset id stored in its metadata and used to re-open it: LeRobotDataset(repo_id, root=root). Never
    # pushed: recording is offline.
    repo_id: str = "local/pirl_eval"
    # Task text attached to every frame (LeRobot requires one). "": the sim task name, else "pirl eval".
    task: str = ""
    # Record the policy's cameras (observation.images.<cam>) too. Off: state, action and flags only.
    images: bool = True
    # Replace an existing dataset folder at `root`.
    overwrite: bool = False


class EpisodeRecorder:
    """Frames in, one LeRobot episode per `end_episode`; `close()` finalises the files."""

    def __init__(
        self,
        cfg: RecordConfig,
        fps: int,
        state_names: Sequence[str],
        action_names: Sequence[str],
        image_shapes: Mapping[str, tuple[int, int, int]] | None = None,
        robot_type: str | None = None,
    ) -> None:
        if cfg.root is None:
            raise ValueError("EpisodeRecorder needs record.root (the dataset folder to write)")
        if not cfg.task:
            raise ValueError("EpisodeRecorder needs a task string (LeRobot stores one per frame)")
        root = Path(cfg.root)
        if root.exists():
            if not cfg.overwrite:
                raise FileExistsError(
                    f"dataset folder {root} already exists; choose a new --record.root or pass "
                    "--record.overwrite=true"
                )
            shutil.rmtree(root)
        # Videos are never written here, so LeRobot's warning that no video decoder loads is noise.
        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
        import datasets
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        datasets.disable_progress_bars()  # one "Map" bar per saved episode otherwise
        features: dict[str, dict[str, Any]] = {
            "observation.state": {
                "dtype": "float32",
                "shape": (len(state_names),),
                "names": list(state_names),
            },
            "action": {"dtype": "float32", "shape": (len(action_names),), "names": list(action_names)},
            INTERVENTION: {"dtype": "bool", "shape": (1,), "names": None},
            "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
            "next.done": {"dtype": "bool", "shape": (1,), "names": None},
            "next.success": {"dtype": "bool", "shape": (1,), "names": None},
        }
        self.image_keys = list(image_shapes or {})
        for key, shape in (image_shapes or {}).items():
            features[f"observation.images.{key}"] = {
                "dtype": "image",
                "shape": tuple(int(s) for s in shape),
                "names": ["height", "width", "channels"],
            }
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.task = cfg.task
        self.dataset = LeRobotDataset.create(
            repo_id=cfg.repo_id,
            fps=int(fps),
            features=features,
            root=root,
            robot_type=robot_type,
            use_videos=False,
        )
        self.root = root
        self.frames = 0  # frames written (saved episodes only)
        self.episodes = 0  # episodes written
        self._pending: list[dict[str, Any]] = []
        self._closed = False

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
        for key in self.image_keys:
            frame[f"observation.images.{key}"] = np.array(observation[key], dtype=np.uint8, copy=True)
        self._pending.append(frame)

    @property
    def pending(self) -> int:
        """Frames of the episode in progress (not yet written)."""
        return len(self._pending)

    def end_episode(self, success: bool, success_reward: float | None = None) -> None:
        """Write the episode. `success` is the final verdict: it goes on the last frame (done is set there
        too); when it is a success that the steps did not already reward, `success_reward` is added."""
        if not self._pending:
            return
        last = self._pending[-1]
        last["next.done"] = np.array([True])
        if success and not bool(last["next.success"][0]) and success_reward is not None:
            last["next.reward"] = np.array([float(last["next.reward"][0]) + success_reward], np.float32)
        last["next.success"] = np.array([bool(success)])
        for frame in self._pending:
            self.dataset.add_frame(frame)
        self.dataset.save_episode()
        self.frames += len(self._pending)
        self.episodes += 1
        self._pending = []

    def discard_episode(self) -> None:
        """Drop the episode in progress (re-record, interrupted run)."""
        self._pending = []

    def close(self) -> None:
        """Finalise the parquet files (required before the dataset can be read). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        self.dataset.finalize()
