"""The learner's side of LeRobot's `LearnerService` contract, for PI-RL, safe with several actors.

Same four RPCs and message types as `lerobot.rl.learner_service.LearnerService`; what differs:

- Parameters are *broadcast*: the training loop publishes (version, bytes) into one slot and every open
  StreamParameters call sends the newest version it has not sent yet. LeRobot's service pops from one
  shared queue, so with two actors each push reaches only one of them. A new stream gets the current
  weights at once: an actor never acts on weights the learner does not have (LeRobot PR #4560).
- Received payloads are decoded in the gRPC thread (weights-only / JSON, see `app.transport.codec`) and
  put on bounded queues; a full queue blocks the sender (gRPC flow control pushes back to the actor) for
  as long as that caller is still connected. Malformed payloads are refused with INVALID_ARGUMENT.
- Re-sent episodes (an actor retries after a deadline) are recognised by (actor_id, episode) and dropped.
- Streams end when the caller disconnects or the learner shuts down, so a dead actor frees its thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import grpc
from lerobot.transport import services_pb2, services_pb2_grpc

from app.transport.channel import ACTOR_ID_METADATA_KEY
from app.transport.codec import (
    DecodeError,
    Rollout,
    decode_interaction,
    decode_rollout,
    iter_payloads,
    to_messages,
)

log = logging.getLogger("pirl.learner.service")

# How often a blocked stream re-checks that its caller is alive and the learner is not shutting down.
_POLL_S = 0.2


@dataclass
class ServiceStats:
    """Counters the training loop logs (charts/...) and tests check."""

    rollouts_received: int = 0
    duplicates_dropped: int = 0
    payloads_refused: int = 0
    interactions_received: int = 0
    parameter_pushes: int = 0
    parameter_streams_open: int = 0
    actors_seen: dict[str, float] = field(default_factory=dict)  # actor id -> last time heard from


class PIRLLearnerService(services_pb2_grpc.LearnerServiceServicer):
    def __init__(
        self,
        shutdown: threading.Event,
        max_pending_rollouts: int = 256,
        max_pending_interactions: int = 4096,
        dedup_window: int = 4096,
    ):
        self.shutdown = shutdown
        self.rollouts: queue.Queue[Rollout] = queue.Queue(maxsize=max_pending_rollouts)
        self.interactions: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_pending_interactions)
        self.stats = ServiceStats()
        self._lock = threading.Lock()
        self._params_changed = threading.Condition(self._lock)
        self._params: tuple[int, bytes] | None = None
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._dedup_window = dedup_window

    # ------------------------------------------------------------------------------ training-loop side

    def publish_parameters(self, version: int, payload: bytes) -> None:
        """Make `payload` (encoded `Parameters`) the weights every actor stream sends next."""
        with self._params_changed:
            self._params = (int(version), payload)
            self._params_changed.notify_all()

    @property
    def published_version(self) -> int | None:
        with self._lock:
            return None if self._params is None else self._params[0]

    # ------------------------------------------------------------------------------------- RPC methods

    def Ready(self, request, context):  # noqa: N802
        self._heard_from(context)
        return services_pb2.Empty()

    def StreamParameters(self, request, context):  # noqa: N802
        actor = self._heard_from(context)
        log.info("actor %s opened the parameter stream", actor)
        sent_version: int | None = None
        with self._lock:
            self.stats.parameter_streams_open += 1
        try:
            while not self.shutdown.is_set() and context.is_active():
                with self._params_changed:
                    current = self._params
                    if current is None or current[0] == sent_version:
                        self._params_changed.wait(_POLL_S)
                        continue
                version, payload = current
                yield from to_messages(payload, services_pb2.Parameters)
                sent_version = version
                with self._lock:
                    self.stats.parameter_pushes += 1
                log.debug("sent parameters v%d to %s", version, actor)
        finally:
            with self._lock:
                self.stats.parameter_streams_open -= 1
            log.info("parameter stream of actor %s closed", actor)

    def SendTransitions(self, request_iterator, context):  # noqa: N802
        self._heard_from(context)
        for payload in self._payloads(request_iterator, context):
            try:
                rollout = decode_rollout(payload)
            except DecodeError as err:
                self._refuse(context, err)
            if self._is_duplicate(rollout.key):
                with self._lock:
                    self.stats.duplicates_dropped += 1
                continue
            if not self._put(self.rollouts, rollout, context):
                self._forget(rollout.key)  # not stored: the actor's retry must be accepted
                break
            with self._lock:
                self.stats.rollouts_received += 1
        return services_pb2.Empty()

    def SendInteractions(self, request_iterator, context):  # noqa: N802
        self._heard_from(context)
        for payload in self._payloads(request_iterator, context):
            try:
                message = decode_interaction(payload)
            except DecodeError as err:
                self._refuse(context, err)
            if not self._put(self.interactions, message, context):
                break
            with self._lock:
                self.stats.interactions_received += 1
        return services_pb2.Empty()

    # ----------------------------------------------------------------------------------------- helpers

    def _payloads(self, request_iterator, context):
        try:
            yield from iter_payloads(request_iterator)
        except DecodeError as err:
            self._refuse(context, err)

    def _refuse(self, context, err: Exception):
        with self._lock:
            self.stats.payloads_refused += 1
        log.warning("refused a payload: %s", err)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))

    def _put(self, q: queue.Queue, item: Any, context) -> bool:
        """Block while the queue is full (back-pressure), as long as the caller and the learner live."""
        while not self.shutdown.is_set() and context.is_active():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _is_duplicate(self, key: tuple[str, int]) -> bool:
        with self._lock:
            if key in self._seen:
                return True
            self._seen[key] = None
            while len(self._seen) > self._dedup_window:
                self._seen.popitem(last=False)
            return False

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def _heard_from(self, context) -> str:
        actor = dict(context.invocation_metadata() or ()).get(ACTOR_ID_METADATA_KEY) or context.peer()
        with self._lock:
            self.stats.actors_seen[actor] = time.time()
        return actor
