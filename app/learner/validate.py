"""What the learner's service checks on each rollout before accepting it (app/learner/service.py).

Two layers, in this order, each refusing with a `DecodeError` that names the problem (the service answers
INVALID_ARGUMENT with its message):

1. `admit_rollout(payload, validate)`: the envelope (`decode_rollout`: weights-only, exact keys, types)
   and then the learner's `validate(rollout)`, i.e. its policy's `RolloutSpec` (fields, dtypes, per-row
   shapes, finite floats, integer ranges, unique (episode_id, chunk_index) rows; see
   `app.learner.loop.rollout_spec`) and the episode meta;
2. `EpisodeWindow.accept(key, ids)`: the de-duplication window over accepted rollouts. A rollout whose
   (actor_id, episode) key was accepted before is a re-send ("duplicate": dropped, acknowledged); one whose
   episode ids another accepted rollout uses is refused (ids must be unique across actors and episodes).
   The window keeps the newest `size` keys and is saved in checkpoints (`state` / `restore`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from app.transport.codec import DecodeError, Rollout, decode_rollout

Key = tuple[str, int]  # (actor_id, episode): what a re-sent rollout repeats
DUPLICATE = "duplicate"


def admit_rollout(payload: bytes, validate: Callable[[Rollout], None] | None) -> Rollout:
    """The rollout in `payload` if this learner can train on it, else `DecodeError` (never another error)."""
    rollout = decode_rollout(payload)
    if validate is not None:
        validate(rollout)
    return rollout


def episode_ids(rollout: Rollout) -> tuple[int, ...]:
    """The distinct episode ids a rollout's rows carry (none if it has no integer `episode_id` field)."""
    ids = rollout.batch.get("episode_id")
    if ids is None or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        return ()
    return tuple(int(i) for i in torch.unique(ids.reshape(-1)).tolist())


class EpisodeWindow:
    """Accepted rollout keys, oldest first, each with the episode ids its rows use (thread-safe).

    `seen` (key -> ids) and `owner` (episode id -> key) are the live maps; read them under `lock`."""

    def __init__(self, size: int = 4096):
        self.size = size
        self.lock = threading.Lock()
        self.seen: OrderedDict[Key, tuple[int, ...]] = OrderedDict()
        self.owner: dict[int, Key] = {}

    def accept(self, key: Key, ids: tuple[int, ...]) -> str | None:
        """Take `key` and its episode ids: None if they were free, `DUPLICATE` if `key` was accepted
        before, else why an episode id cannot be used."""
        with self.lock:
            if key in self.seen:
                return DUPLICATE
            for i in ids:
                other = self.owner.get(i)
                if other is not None:
                    return (
                        f"episode id {i} is already used by episode {other[1]} of {other[0][:80]!r} "
                        "(episode ids must be unique across actors and episodes)"
                    )
            self.seen[key] = ids
            for i in ids:
                self.owner[i] = key
            while len(self.seen) > self.size:
                _, old_ids = self.seen.popitem(last=False)
                for i in old_ids:
                    self.owner.pop(i, None)
            return None

    def admit(self, payload: bytes, validate: Callable[[Rollout], None] | None) -> Rollout | None:
        """`admit_rollout`, then take its key and episode ids: the rollout, None for a re-send (a key
        accepted before), or `DecodeError` (also for an episode id another accepted rollout uses)."""
        rollout = admit_rollout(payload, validate)
        clash = self.accept(rollout.key, episode_ids(rollout))
        if clash == DUPLICATE:
            return None
        if clash is not None:
            raise DecodeError(f"transitions: {clash}")
        return rollout

    def register(self, rollout: Rollout) -> str | None:
        """Count `rollout` as accepted (reloaded from the spool, after `restore`): None if it is (also when
        its key was known already: it becomes the last to leave the window), else why not."""
        why = self.accept(rollout.key, episode_ids(rollout))
        if why == DUPLICATE:
            with self.lock:
                self.seen.move_to_end(rollout.key)
            return None
        return why

    def forget(self, key: Key) -> None:
        """`key` was not accepted after all (not stored): a re-send of it must be accepted."""
        with self.lock:
            for i in self.seen.pop(key, ()):
                if self.owner.get(i) == key:
                    del self.owner[i]

    def state(self) -> list[list[Any]]:
        """The window as plain lists, oldest first (stored in checkpoints)."""
        with self.lock:
            return [[actor, episode, list(ids)] for (actor, episode), ids in self.seen.items()]

    def restore(self, entries: Iterable[Any]) -> None:
        """Load `state()`; entries that do not parse are skipped (it is a cache of what was seen)."""
        for entry in entries:
            try:
                actor, episode, ids = entry
                self.accept((str(actor), int(episode)), tuple(int(i) for i in ids))
            except (TypeError, ValueError):
                continue
