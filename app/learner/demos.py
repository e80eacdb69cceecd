"""Demonstrations for the robot-minute method: critic pre-training rows and the anchor batch.

`learner.demos` names either

- a LeRobotDataset folder (what `pirl bc --dataset.root=...` reads: `observation.state`, `action`, optional
  `observation.images.<key>` for `actor.image_keys`, optional `next.reward` / `next.success`), or
- a demo file (`*.pt`, what `pirl demo` writes as `demos.pt`): `torch.save({"format": 1, "episodes": [...]})`
  with per-step episodes `{"observation.state": [T, S], ..., "action": [T, A], "reward": [T]}`.

Both become per-step episodes. An episode's reward is its `reward` / `next.reward` column; without one, a
demo counts as a success that pays `success_reward` at its last step (`next.success`, when present, decides
instead, and a dataset episode whose last frame says failure pays nothing). From them:

- `demo_rows(episodes, model)`: whole-episode RolloutBatch rows shaped like an actor's takeover chunks (one
  row per `exec_horizon` steps; intervention=True, human_action = the next `chunk_size` demo actions, the
  tail repeating the last one, human_mask all True, zero chains) -> `PIRLTrainer.pretrain_critic`;
- `anchor_batch(episodes, chunk_size)`: `bc.make_chunks` of the observations and actions ->
  `PIRLTrainer.set_anchor_batch`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from app.rl.batch import ChunkRecord, RolloutBatch
from app.rl.bc import make_chunks
from app.rl.datasets import ACTION_KEY, DatasetEpisodes
from app.rl.native import STATE_KEY

REWARD_KEY = "reward"
DEMO_FILE_FORMAT = 1
_NOT_OBS = (ACTION_KEY, REWARD_KEY)


def save_demo_file(path: str | Path, episodes: Sequence[dict[str, torch.Tensor]], **info: Any) -> Path:
    """Write per-step episodes (observation keys, "action" [T, A], "reward" [T]) as a demo file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = [{k: torch.as_tensor(v).detach().cpu() for k, v in ep.items()} for ep in episodes]
    for i, ep in enumerate(clean):
        _check_episode(ep, f"episode {i}")
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": DEMO_FILE_FORMAT, "episodes": clean, "info": json.dumps(info)}, tmp)
    tmp.replace(path)
    return path


def load_demos(path: str | Path, image_keys: Sequence[str] = (), success_reward: float = 1.0) -> list[dict]:
    """Per-step episodes (observation keys, "action", "reward") from a demo file or a LeRobotDataset."""
    path = Path(path)
    if path.is_dir():
        if not (path / "meta" / "info.json").is_file():
            raise ValueError(f"learner.demos={path} is a folder but not a LeRobotDataset (no meta/info.json)")
        episodes = _load_dataset(path, image_keys, success_reward)
    elif path.is_file():
        data = torch.load(path, weights_only=True)
        if not isinstance(data, dict) or data.get("format") != DEMO_FILE_FORMAT:
            raise ValueError(f"learner.demos={path} is not a demo file (format {DEMO_FILE_FORMAT})")
        episodes = [dict(ep) for ep in data["episodes"]]
    else:
        raise FileNotFoundError(
            f"learner.demos={path} does not exist (a LeRobotDataset folder or a .pt file)"
        )
    if not episodes:
        raise ValueError(f"learner.demos={path} holds no episodes")
    for i, ep in enumerate(episodes):
        if REWARD_KEY not in ep:  # a demo without rewards is a success at its last step
            reward = torch.zeros(ep[ACTION_KEY].shape[0])
            reward[-1] = success_reward
            ep[REWARD_KEY] = reward
        _check_episode(ep, f"{path} episode {i}")
    return episodes


def _load_dataset(root: Path, image_keys: Sequence[str], success_reward: float) -> list[dict]:
    """The dataset's episodes, read as `pirl bc` reads them (app/rl/datasets.py), plus their rewards."""
    data = DatasetEpisodes(
        root, where=f"learner.demos={root}", image_keys=image_keys, optional=("next.reward", "next.success")
    )
    episodes = []
    for ep in data.ids:
        item = data.episode(ep)
        if data.has("next.reward"):
            item[REWARD_KEY] = data.column("next.reward", ep).reshape(-1).float()
        elif data.has("next.success"):
            reward = torch.zeros(item[ACTION_KEY].shape[0])
            reward[-1] = success_reward if bool(data.column("next.success", ep).reshape(-1)[-1]) else 0.0
            item[REWARD_KEY] = reward
        episodes.append(item)
    return episodes


def _check_episode(ep: dict[str, torch.Tensor], where: str) -> None:
    if ACTION_KEY not in ep or STATE_KEY not in ep:
        raise ValueError(f"{where}: needs {STATE_KEY!r} and {ACTION_KEY!r}, has {sorted(ep)}")
    t_len = ep[ACTION_KEY].shape[0]
    if t_len < 1 or ep[ACTION_KEY].dim() != 2:
        raise ValueError(
            f"{where}: {ACTION_KEY!r} must be [T >= 1, action_dim], got {tuple(ep[ACTION_KEY].shape)}"
        )
    bad = {k: tuple(v.shape) for k, v in ep.items() if v.shape[0] != t_len}
    if bad:
        raise ValueError(f"{where}: every tensor needs {t_len} steps (the actions'), got {bad}")


def is_success(ep: dict[str, torch.Tensor], success_reward: float = 1.0) -> bool:
    return bool(ep[REWARD_KEY][-1] >= success_reward)


def demo_rows(
    episodes: Sequence[dict[str, torch.Tensor]], model: Any, success_reward: float = 1.0
) -> RolloutBatch:
    """Whole demo episodes -> takeover-style RolloutBatch rows (see the module docstring).

    A row per `model.exec_horizon` steps; its reward is the sum over those steps; the last row of an
    episode is `done` when the episode succeeded (its last reward >= success_reward), else `truncated`
    with bootstrap value 0. Episode ids are -1, -2, ... (never an actor's)."""
    pol = model.policy
    h, size = int(model.exec_horizon), int(pol.chunk_size)
    chain = torch.zeros(int(model.cfg.num_steps) + 1, size, int(pol.model_action_dim))
    records: list[ChunkRecord] = []
    for e, ep in enumerate(episodes):
        _check_episode(ep, f"demo episode {e}")
        act, reward = ep[ACTION_KEY].float(), ep[REWARD_KEY].float()
        if act.shape[1] != pol.action_dim:
            raise ValueError(f"demo actions have {act.shape[1]} dims, the policy {pol.action_dim}")
        t_len = act.shape[0]
        success = is_success(ep, success_reward)
        starts = list(range(0, t_len, h))
        for k, t in enumerate(starts):
            last = k == len(starts) - 1
            idx = (t + torch.arange(size)).clamp(max=t_len - 1)
            records.append(
                ChunkRecord(
                    obs={key: v[t] for key, v in ep.items() if key not in _NOT_OBS},
                    reward=float(reward[t : t + h].sum()),
                    done=last and success,
                    truncated=last and not success,
                    chain=chain,
                    intervention=True,
                    human_action=act[idx],
                    human_mask=torch.ones(size, dtype=torch.bool),
                    episode_id=-(e + 1),
                    chunk_index=k,
                )
            )
    return RolloutBatch.from_records(records, pol.action_dim)


def anchor_batch(episodes: Sequence[dict[str, torch.Tensor]], chunk_size: int) -> dict[str, torch.Tensor]:
    """`bc.make_chunks` of the demos' observations and actions: the anchor loss's fixed batch."""
    return make_chunks([{k: v for k, v in ep.items() if k != REWARD_KEY} for ep in episodes], chunk_size)
