"""The learner's side of LeRobot's `LearnerService` contract, for PI-RL, safe with several actors.

Same four RPCs and message types as `lerobot.rl.learner_service.LearnerService`; what differs:

- Parameters are *broadcast*: the training loop publishes a version into one slot and every open
  StreamParameters call sends the newest version it has not sent yet. LeRobot's service pops from one
  shared queue, so with two actors each push reaches only one of them. A new stream gets the current
  weights at once: an actor never acts on weights the learner does not have (LeRobot PR #4560).
- A push (`publish_weights`) casts the weights straight into a reused buffer (`pirl/params/v2`, see
  `app.transport.params`) and streams slice it; a buffer is never rewritten while a stream still sends
  it. With actors that keep up, the learner holds one payload (the published one, rewritten in place by
  the next push); a stream still sending an older push when the next one comes costs a second buffer
  (kept for reuse, at most `keep_buffers`). Fresh payload-sized memory costs 0.3 to 3 s per GB in page
  faults on the dev VM, several times the cast itself. StreamParameters sends pre-serialized messages (the
  same bytes as LeRobot's, see `app.transport.chunks`), so register the service with `add_to_server`.
- Received payloads are decoded in the gRPC thread and put on bounded queues; a full queue blocks the
  sender (flow control) while that caller is connected. Nothing from the network can stop training:
  payloads past `max_rollout_bytes` / `max_interaction_bytes`, streams that end without END and rollouts
  that fail the checks of `app.learner.validate` (envelope, the learner's `validate`, episode ids already
  used) are refused with INVALID_ARGUMENT and a message; re-sends (same actor_id, episode) are dropped.
- An accepted rollout is written to the `RolloutSpool` (fsynced) before the call returns OK, so a learner
  killed at any moment loses no acknowledged episode. While the learner stops (`close()`, the shutdown
  event) sends are refused with UNAVAILABLE: the actor keeps the payload and re-sends it to the next one.
- Streams end when the caller disconnects or the learner shuts down, so a dead actor frees its thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from lerobot.transport import services_pb2, services_pb2_grpc

from app.learner.spool import RolloutSpool
from app.learner.validate import EpisodeWindow
from app.transport.channel import ACTOR_ID_METADATA_KEY
from app.transport.chunks import frame_parameters
from app.transport.codec import DecodeError, Rollout, decode_interaction, iter_payloads
from app.transport.params import Parameters, layout_parameters, write_parameters

log = logging.getLogger("pirl.learner.service")

# How often a blocked stream re-checks that its caller is alive and the learner is not shutting down.
_POLL_S = 0.2
# Actor names kept in `ServiceStats.actors_seen` (a caller names itself: bounded against floods).
_MAX_ACTORS_SEEN = 1024


@dataclass
class ServiceStats:
    """Counters the training loop logs (charts/...) and tests check."""

    rollouts_received: int = 0
    duplicates_dropped: int = 0
    payloads_refused: int = 0
    sends_refused_stopping: int = 0  # answered UNAVAILABLE while the learner stops (the actor re-sends)
    interactions_received: int = 0
    parameter_pushes: int = 0
    parameter_streams_open: int = 0
    actors_seen: dict[str, float] = field(default_factory=dict)  # actor id -> last time heard from


class _SendBuffer(bytearray):
    """A reusable payload buffer; `refs` counts who needs its bytes unchanged (the encoder writing it,
    the publication slot, each stream sending it). Zero: free to rewrite."""

    refs: int = 0


@dataclass
class _Published:
    version: int
    payload: memoryview
    buffer: _SendBuffer | None  # None: bytes the caller owns (`publish_parameters`)


class PIRLLearnerService(services_pb2_grpc.LearnerServiceServicer):
    def __init__(
        self,
        shutdown: threading.Event,
        max_pending_rollouts: int = 256,
        max_pending_interactions: int = 4096,
        dedup_window: int = 4096,
        keep_buffers: int = 2,
        validate: Callable[[Rollout], None] | None = None,
        spool: RolloutSpool | None = None,
        max_rollout_bytes: int | None = None,
        max_interaction_bytes: int | None = None,
    ):
        """`validate(rollout)` raises `DecodeError` for a rollout the learner cannot train on (the learner
        builds it from its policy; None: only the envelope is checked). `spool`: where accepted rollouts are
        stored before the call returns OK (None: in memory only). The byte limits are
        `TransportConfig.max_rollout_bytes` / `max_interaction_bytes` (None: unlimited)."""
        self.shutdown = shutdown
        self.rollouts: queue.Queue[Rollout] = queue.Queue(maxsize=max_pending_rollouts)
        self.interactions: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_pending_interactions)
        self.stats = ServiceStats()
        self.validate = validate
        self.spool = spool
        self.max_rollout_bytes = max_rollout_bytes
        self.max_interaction_bytes = max_interaction_bytes
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._params_changed = threading.Condition(self._lock)
        self._params: _Published | None = None
        self._buffers: list[_SendBuffer] = []  # every pooled buffer in use or kept for reuse
        self._keep_buffers = keep_buffers
        # accepted rollouts, oldest first -> their episode ids (app.learner.validate)
        self._window = EpisodeWindow(dedup_window)
        self._seen = self._window.seen  # read-only view (tests, diagnostics)

    # ------------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """The learner is stopping: from now on sends are refused with UNAVAILABLE (the actor keeps the
        payload and re-sends it to the next learner). Parameter streams go on until the shutdown event."""
        self._closing.set()

    @property
    def closing(self) -> bool:
        return self._closing.is_set() or self.shutdown.is_set()

    # ---------------------------------------------------------------------------- de-duplication state

    def register(self, rollout: Rollout) -> str | None:
        """Count `rollout` as accepted (a rollout reloaded from the spool, after `restore_dedup`): None if
        it is (also when its key was known already), else why not (an episode id taken by another)."""
        return self._window.register(rollout)

    def dedup_state(self) -> list[list[Any]]:
        """The de-duplication window as plain lists (stored in checkpoints: a resumed learner still drops
        re-sends and refuses reused episode ids of episodes accepted before the stop)."""
        return self._window.state()

    def restore_dedup(self, entries: Iterable[Any]) -> None:
        """Load `dedup_state()` (entries that do not parse are skipped: it is a cache of what was seen)."""
        self._window.restore(entries)

    # ------------------------------------------------------------------------------ training-loop side

    def publish_weights(self, params: Parameters, bf16: bool = False) -> int:
        """Encode `params` into a reused buffer and make it what every actor stream sends next; returns
        the payload size. The tensors are read here and not after: pass the live (detached) weights,
        no copy needed. `bf16=True` sends floating tensors as bfloat16 (half the bytes)."""
        layout = layout_parameters(params, bf16)
        buf = self._acquire(layout.nbytes)
        try:
            payload = write_parameters(layout, buf)
        except BaseException:
            with self._lock:
                self._unref(buf)
            raise
        self._publish(_Published(int(params.version), payload, buf))  # the writer's ref becomes the slot's
        return layout.nbytes

    def publish_parameters(self, version: int, payload: bytes | bytearray) -> None:
        """Make an already encoded payload what every actor stream sends next (tests, tools); it must not
        change afterwards."""
        self._publish(_Published(int(version), memoryview(payload).cast("B"), None))

    def published_payload(self) -> tuple[int, bytes] | None:
        """(version, a copy of the payload) of what new streams get now (tests, diagnostics)."""
        with self._lock:
            p = self._params
            return None if p is None else (p.version, bytes(p.payload))

    def add_to_server(self, server: grpc.Server) -> None:
        """LeRobot's `add_LearnerServiceServicer_to_server`, except that StreamParameters yields messages
        already serialized (`frame_parameters`), so its response serializer is the identity."""
        pb = services_pb2
        handlers = {
            "StreamParameters": grpc.unary_stream_rpc_method_handler(
                self.StreamParameters, request_deserializer=pb.Empty.FromString, response_serializer=None
            ),
            "SendTransitions": grpc.stream_unary_rpc_method_handler(
                self.SendTransitions,
                request_deserializer=pb.Transition.FromString,
                response_serializer=pb.Empty.SerializeToString,
            ),
            "SendInteractions": grpc.stream_unary_rpc_method_handler(
                self.SendInteractions,
                request_deserializer=pb.InteractionMessage.FromString,
                response_serializer=pb.Empty.SerializeToString,
            ),
            "Ready": grpc.unary_unary_rpc_method_handler(
                self.Ready,
                request_deserializer=pb.Empty.FromString,
                response_serializer=pb.Empty.SerializeToString,
            ),
        }
        name = pb.DESCRIPTOR.services_by_name["LearnerService"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)

    def _acquire(self, nbytes: int) -> _SendBuffer:
        """A buffer nobody reads, with one ref for the writer: a free pooled one, else the published one
        if no stream is sending it (new streams then wait for this push, a fraction of a second), else a
        new one (only while streams still send older pushes)."""
        with self._lock:
            self._buffers = [b for b in self._buffers if b.refs or len(b) >= nbytes]  # too small: drop
            for buf in self._buffers:
                if buf.refs == 0:
                    buf.refs = 1
                    return buf
            current = self._params
            reusable = current.buffer if current is not None else None
            if reusable is not None and reusable.refs == 1 and len(reusable) >= nbytes:
                self._params = None  # the slot's ref becomes the writer's
                return reusable
        buf = _SendBuffer(nbytes)
        buf.refs = 1
        with self._lock:
            self._buffers.append(buf)
        return buf

    def _publish(self, published: _Published) -> None:
        with self._params_changed:
            old, self._params = self._params, published
            self._params_changed.notify_all()
            if old is not None and old.buffer is not None:
                self._unref(old.buffer)

    def _unref(self, buf: _SendBuffer) -> None:
        """Drop one ref (lock held); a buffer nobody needs any more is dropped if more than
        `keep_buffers` exist."""
        buf.refs -= 1
        if buf.refs == 0 and len(self._buffers) > self._keep_buffers:
            self._buffers = [b for b in self._buffers if b is not buf]

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
                    if current is None or current.version == sent_version:
                        self._params_changed.wait(_POLL_S)
                        continue
                    if current.buffer is not None:
                        current.buffer.refs += 1  # not rewritten while this stream sends it
                try:
                    yield from frame_parameters(current.payload)
                finally:  # also when the caller goes away mid-payload (the generator is closed)
                    if current.buffer is not None:
                        with self._lock:
                            self._unref(current.buffer)
                sent_version = current.version
                with self._lock:
                    self.stats.parameter_pushes += 1
                log.debug("sent parameters v%d to %s", current.version, actor)
        finally:
            with self._lock:
                self.stats.parameter_streams_open -= 1
            log.info("parameter stream of actor %s closed", actor)

    def SendTransitions(self, request_iterator, context):  # noqa: N802
        self._heard_from(context)
        self._refuse_if_closing(context)
        payloads = self._payloads(request_iterator, context, self.max_rollout_bytes, "transitions")
        for payload in payloads:
            self._refuse_if_closing(context)
            try:  # envelope, the learner's checks, episode ids (None: a re-send, dropped)
                rollout = self._window.admit(payload, self.validate)
            except DecodeError as err:
                self._refuse(context, err)
            if rollout is None:
                with self._lock:
                    self.stats.duplicates_dropped += 1
                continue
            if self.spool is not None:
                try:
                    self.spool.write(rollout.key, payload)
                except OSError as err:  # disk full, ...: not stored, so not acknowledged
                    self._window.forget(rollout.key)
                    log.error("could not store a rollout from %s: %s", rollout.actor_id, err)
                    context.abort(grpc.StatusCode.UNAVAILABLE, f"learner could not store the rollout: {err}")
            del payload
            if not self._put(self.rollouts, rollout, context):
                if self.spool is not None and self.closing:
                    # stored: the next learner trains it and drops the re-send as a duplicate
                    self._refuse_stopping(context)
                self._window.forget(rollout.key)  # not stored: the actor's retry must be accepted
                if self.spool is not None:
                    self.spool.discard(rollout.key)
                if self.closing:
                    self._refuse_stopping(context)
                break  # the caller went away
            with self._lock:
                self.stats.rollouts_received += 1
        return services_pb2.Empty()

    def SendInteractions(self, request_iterator, context):  # noqa: N802
        self._heard_from(context)
        self._refuse_if_closing(context)
        payloads = self._payloads(request_iterator, context, self.max_interaction_bytes, "interactions")
        for payload in payloads:
            self._refuse_if_closing(context)
            try:
                message = decode_interaction(payload)
            except DecodeError as err:
                self._refuse(context, err)
            if not self._put(self.interactions, message, context):
                if self.closing:
                    self._refuse_stopping(context)
                break
            with self._lock:
                self.stats.interactions_received += 1
        return services_pb2.Empty()

    # ----------------------------------------------------------------------------------------- helpers

    def _payloads(self, request_iterator, context, max_bytes: int | None, what: str):
        try:
            yield from iter_payloads(request_iterator, max_bytes=max_bytes, what=what)
        except DecodeError as err:
            self._refuse(context, err)

    def _refuse(self, context, err: Exception):
        with self._lock:
            self.stats.payloads_refused += 1
        log.warning("refused a payload from %s: %s", context.peer(), err)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))

    def _refuse_if_closing(self, context) -> None:
        if self.closing:
            self._refuse_stopping(context)

    def _refuse_stopping(self, context):
        with self._lock:
            self.stats.sends_refused_stopping += 1
        context.abort(grpc.StatusCode.UNAVAILABLE, "the learner is stopping; send again to the next one")

    def _put(self, q: queue.Queue, item: Any, context) -> bool:
        """Block while the queue is full (back-pressure), as long as the caller and the learner live."""
        while not self.closing and context.is_active():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _heard_from(self, context) -> str:
        actor = dict(context.invocation_metadata() or ()).get(ACTOR_ID_METADATA_KEY) or context.peer()
        actor = str(actor)[:128]
        with self._lock:
            seen = self.stats.actors_seen
            seen.pop(actor, None)  # newest last
            seen[actor] = time.time()
            while len(seen) > _MAX_ACTORS_SEEN:
                del seen[next(iter(seen))]
        return actor
