"""The actor's policy weights: wait for the learner's first push, swap newer ones in at the safe point
(between chunks), refuse weights that do not fit this actor's policy.

The actor never acts before it holds the learner's weights (so a resumed learner's weights are the first
ones used, LeRobot PR #4560); every rollout row names the version that sampled it.

A push is checked before it can replace the running weights (`WeightCheck`: exactly the model's
trainable names, their shapes, their dtypes, finite values). The client runs the full check in its
receive thread, off the robot loop; `load()` repeats the cheap part (names, shapes, dtypes) and checks the
frozen digest. A refused push is logged, counted and shown (`ClientStatus.weights_error`, the console's
learner-link section) until good weights are loaded; the actor keeps acting with the weights it has. Only
the first push may stop the actor: weights whose frozen part differs from this actor's mean the two sides
were started from different policies (`ActorError`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from app.rl.digests import frozen_digest
from app.transport.codec import DecodeError, Parameters
from app.transport.params import check_parameters

log = logging.getLogger("pirl.actor")


class ActorError(RuntimeError):
    """The actor cannot go on (message says why and what to change)."""


class WeightCheck:
    """`check(params)` raises `DecodeError` unless `params` holds exactly `model`'s trainable tensors, with
    their shapes and dtypes (a floating one may travel as float32 or bfloat16) and, with `finite`, only
    finite values. Thread-safe: it only reads the push and a fixed spec."""

    def __init__(self, model: Any) -> None:
        self.spec: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
            name: (tuple(t.shape), t.dtype) for name, t in model.trainable_tensors().items()
        }

    def __call__(self, params: Parameters, finite: bool = True) -> None:
        check_parameters(params, self.spec, finite=finite)


class WeightSync:
    def __init__(self, model: Any, client: Any) -> None:
        self.model = model
        self.client = client
        self.digest = frozen_digest(model)  # of the weights that are never sent
        self.check = WeightCheck(model)
        self.version: int | None = None
        self.loaded_at: float | None = None  # monotonic time the current weights were loaded
        self.refused = 0  # pushes refused here (the client counts those it refused itself)
        self.last_refusal = ""

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
        told = ""
        while not shutdown.is_set():
            service()
            params = self.client.wait_for_parameters(0.2)
            if params is not None and self.load(params):
                return True
            refusal = self.client.status.weights_error
            if refusal and refusal != told:
                told = refusal
                say(f"refused the learner's weights, still waiting for usable ones: {refusal}")
            if limit_s and time.monotonic() - t0 > limit_s:
                say(
                    f"no weights from the learner after {limit_s:.0f} s "
                    f"({refusal or self.client.status.last_error or 'no answer'}); is `pirl learner` running?"
                )
                return False
        return False

    def update(self) -> None:
        """The safe point (between chunks): load the newest weights, if newer ones arrived."""
        params = self.client.latest_parameters(newer_than=self.version)
        if params is not None:
            self.load(params)

    def load(self, params: Parameters) -> bool:
        """Copy `params` into the model, or refuse them (False; the running weights stay)."""
        if params.base_digest and params.base_digest != self.digest:
            why = (
                "the learner's policy differs from this actor's in the weights that are not sent "
                f"(frozen digest {params.base_digest} vs {self.digest}): start both from the same "
                "--policy_path, or the same --policy.* and --seed"
            )
            if self.version is None:
                self.client.release(params.version)
                raise ActorError(why)
            return self._refuse(params, why)
        try:  # the client ran the full check (finite values too) off the robot loop; else run it here
            self.check(params, finite=getattr(self.client, "check", None) is not self.check)
        except DecodeError as err:
            return self._refuse(params, str(err))
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
        note = getattr(self.client, "note_loaded", None)
        if note is not None:
            note(params.version)
        log.info("loaded weights v%d", params.version)
        return True

    def _refuse(self, params: Parameters, why: str) -> bool:
        self.refused += 1
        self.last_refusal = why
        self.client.release(params.version)  # latest_parameters() returns None until a newer push
        note = getattr(self.client, "note_refused", None)
        if note is not None:
            note(params.version, why)
        else:
            log.error("refused weights v%d from the learner: %s", params.version, why)
        return False
