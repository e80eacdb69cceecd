"""The actor's policy weights: wait for the learner's first push, swap newer ones in at the safe point
(between chunks), refuse weights whose frozen part differs from this actor's.

The actor never acts before it holds the learner's weights (so a resumed learner's weights are the first
ones used, LeRobot PR #4560); every rollout row names the version that sampled it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from app.rl.digests import frozen_digest
from app.transport.codec import Parameters

log = logging.getLogger("pirl.actor")


class ActorError(RuntimeError):
    """The actor cannot go on (message says why and what to change)."""


class WeightSync:
    def __init__(self, model: Any, client: Any) -> None:
        self.model = model
        self.client = client
        self.digest = frozen_digest(model)  # of the weights that are never sent
        self.version: int | None = None
        self.loaded_at: float | None = None  # monotonic time the current weights were loaded

    def wait_first(
        self,
        shutdown: threading.Event,
        service: Callable[[], None],
        limit_s: float,
        say: Callable[[str], None],
        address: str,
    ) -> bool:
        """Block (serving the console and the link) until the learner's first weights are loaded. False
        when stopped, or after `limit_s` (0: no limit) without weights."""
        t0 = time.monotonic()
        say(f"waiting for weights from {address}")
        while not shutdown.is_set():
            service()
            params = self.client.wait_for_parameters(0.2)
            if params is not None:
                self.load(params)
                return True
            if limit_s and time.monotonic() - t0 > limit_s:
                say(
                    f"no weights from the learner after {limit_s:.0f} s "
                    f"({self.client.status.last_error or 'no answer'}); is `pirl learner` running?"
                )
                return False
        return False

    def update(self) -> None:
        """The safe point (between chunks): load the newest weights, if newer ones arrived."""
        params = self.client.latest_parameters(newer_than=self.version)
        if params is not None:
            self.load(params)

    def load(self, params: Parameters) -> None:
        if params.base_digest and params.base_digest != self.digest:
            raise ActorError(
                "the learner's policy differs from this actor's in the weights that are not sent "
                f"(frozen digest {params.base_digest} vs {self.digest}): start both from the same "
                "--policy_path, or the same --policy.* and --seed"
            )
        self.model.load_trainable_state(params.state)
        if self.version is not None and params.version < self.version:
            log.warning(
                "learner went back from v%d to v%d (restarted without --resume?)",
                self.version,
                params.version,
            )
        self.version = params.version
        self.loaded_at = time.monotonic()
        self.client.release(params.version)  # the model holds them now; drop the client's copy
        log.info("loaded weights v%d", params.version)
