"""Episodes on an arm: the one chunk executor (observation -> policy chunk or human -> safety -> robot ->
episode accounting), its pacing, and the LeRobotDataset recorder, shared by the actor, `pirl eval` and the
demo's sim rollouts.

The names below load on first use (PEP 562): the run config imports `app.episode.record_config` (plain
dataclasses), and that must not pull torch and the robot stack into every process that parses a config
(the console among them).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChunkResult": "app.episode.executor",
    "EpisodeRun": "app.episode.executor",
    "Executor": "app.episode.executor",
    "Step": "app.episode.executor",
    "action_dict": "app.episode.executor",
    "action_row": "app.episode.executor",
    "chunk_record": "app.episode.executor",
    "Pacer": "app.episode.pacing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'app.episode' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
