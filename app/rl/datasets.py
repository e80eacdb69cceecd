"""A LeRobotDataset's frames grouped into per-step episode tensors: the reading `pirl bc` (app/bc.py) and
the learner's demonstrations (`learner.demos`, app/learner/demos.py) share.

Data, not robots: it reads the dataset folder offline (LeRobot's `lerobot.datasets`, nothing downloaded)
and needs no robot, network or UI stack, so it sits with the algorithm that consumes the episodes (BC,
the anchor, critic pre-training). What each caller makes of the episodes (filters, rewards, keep masks)
stays with the caller; this module only checks the features, loads the columns once and slices them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.rl.native import IMAGE_PREFIX, STATE_KEY

ACTION_KEY = "action"


class DatasetEpisodes:
    """The episodes of the LeRobotDataset at `root`, read for `image_keys` and the extra `columns`.

    `where` starts the one-line error for a missing feature ("<where> lacks [...]; it has: ...").
    Required: `observation.state`, `action`, `observation.images.<key>` for every image key and every
    name in `required`; the names in `optional` are read when the dataset has them (`has(name)`).
    `repo_id` is the id stored in the dataset's metadata; None: its `meta/info.json` one, else
    `local/<folder name>`.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        where: str,
        repo_id: str | None = None,
        image_keys: Sequence[str] = (),
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
    ) -> None:
        import logging

        logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        root = Path(root)
        if repo_id is None:
            info = json.loads((root / "meta" / "info.json").read_text())
            repo_id = info.get("repo_id") or f"local/{root.name}"
        self.dataset = ds = LeRobotDataset(repo_id, root=root)
        self.image_keys = list(image_keys)
        feats = ds.meta.features
        missing = [k for k in (STATE_KEY, ACTION_KEY) if k not in feats]
        missing += [IMAGE_PREFIX + k for k in self.image_keys if IMAGE_PREFIX + k not in feats]
        missing += [k for k in required if k not in feats]
        if missing:
            raise ValueError(f"{where} lacks {missing}; it has: {', '.join(sorted(feats))}")
        columns = [STATE_KEY, ACTION_KEY, "episode_index", *required]
        columns += [k for k in optional if k in feats]
        self._table: dict[str, torch.Tensor] = ds.hf_dataset.with_format("torch", columns=columns)[:]
        self._index = self._table["episode_index"].long()
        self.ids: list[int] = self._index.unique().tolist()  # the episodes, ascending

    @property
    def features(self) -> dict[str, Any]:
        return self.dataset.meta.features

    @property
    def fps(self) -> int:
        return int(self.dataset.meta.fps)

    def names(self, key: str) -> list[str]:
        """The per-entry names of a vector feature (e.g. `observation.state`), [] when not stored."""
        return list(self.features[key].get("names") or [])

    def has(self, column: str) -> bool:
        """The column was read (required, or optional and present)."""
        return column in self._table

    def rows(self, episode: int) -> torch.Tensor:
        """The frame indices of one episode, in order."""
        return (self._index == episode).nonzero().reshape(-1)

    def column(self, name: str, episode: int) -> torch.Tensor:
        """One episode's frames of a column, as stored (e.g. `next.reward` [T, 1])."""
        return self._table[name][self.rows(episode)]

    def episode(self, episode: int) -> dict[str, torch.Tensor]:
        """`observation.state` [T, S], `action` [T, A] and each `observation.images.<key>` [T, C, H, W],
        float. Images are decoded frame by frame (LeRobot's per-item path), so this is the slow part."""
        rows = self.rows(episode)
        item = {
            STATE_KEY: self._table[STATE_KEY][rows].float(),
            ACTION_KEY: self._table[ACTION_KEY][rows].float(),
        }
        for cam in self.image_keys:
            key = IMAGE_PREFIX + cam
            item[key] = torch.stack([self.dataset[int(i)][key] for i in rows]).float()
        return item
