"""Episodes on an arm: the one chunk executor (observation -> policy chunk or human -> safety -> robot ->
episode accounting) and its pacing, shared by the actor, `pirl eval` and the demo's sim rollouts."""

from app.episode.executor import (
    ChunkResult,
    EpisodeRun,
    Executor,
    Step,
    action_dict,
    action_row,
    chunk_record,
)
from app.episode.pacing import Pacer

__all__ = [
    "ChunkResult",
    "EpisodeRun",
    "Executor",
    "Pacer",
    "Step",
    "action_dict",
    "action_row",
    "chunk_record",
]
