"""What and where to record as a LeRobot dataset: `--record.*` (`pirl eval`) and `--actor.record.*`.

Plain dataclasses with no imports of their own, so the run config (app/run/sections.py) can hold the
actor's section without pulling in the recorder or LeRobot's dataset stack; the recorder itself is
app/episode/recorder.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# LeRobot 0.6's default encoder (AV1 through SVT-AV1); measured available offline in pyav here, together
# with h264, hevc and libaom-av1.
DEFAULT_VCODEC = "libsvtav1"


@dataclass
class RecordConfig:
    """Where and how a run writes its LeRobotDataset (`pirl eval --record.*`)."""

    # Folder of the dataset to write. None: don't record. Keep it under outputs/ so it stays out of git.
    root: str | None = None
    # Dataset id stored in its metadata and used to re-open it: LeRobotDataset(repo_id, root=root). Never
    # pushed: recording is offline.
    repo_id: str = "local/pirl_eval"
    # Task text attached to every frame (LeRobot requires one). "": the sim task name, else the command's.
    task: str = ""
    # Record the cameras (observation.images.<cam>) too. Off: state, action and flags only.
    images: bool = True
    # Store camera frames as videos (one mp4 per camera per episode, `vcodec`); False: PNG frames inside
    # the parquet files (bigger; no encoder needed). When `vcodec` cannot encode on this machine the
    # recorder falls back to PNG and says so in one warning line.
    video: bool = True
    # Video codec (LeRobot's names): "libsvtav1" (AV1, LeRobot's default), "h264", "hevc", "libaom-av1",
    # or "auto" (a hardware encoder when one is available, else libsvtav1). Appending to a dataset keeps
    # the codec it was recorded with.
    vcodec: str = DEFAULT_VCODEC
    # Replace an existing dataset folder at `root`.
    overwrite: bool = False
    # Add episodes to the dataset already at `root` (its features must match this run's); False: refuse
    # an existing folder (unless `overwrite`).
    append: bool = False


@dataclass
class ActorRecordConfig(RecordConfig):
    """`--actor.record.*`: every training episode the actor runs, as it ran (policy and takeover steps)."""

    # Folder of the dataset to write, e.g. outputs/run/episodes. None: the actor records nothing.
    root: str | None = None
    # Dataset id stored in its metadata (`pirl bc --dataset.repo_id` names it).
    repo_id: str = "local/pirl_actor"
    # An actor restarted on the same root continues the same dataset (features must match).
    append: bool = True
