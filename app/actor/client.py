"""The actor's connection to the learner: survives learner restarts and never blocks the robot loop.

LeRobot's actor calls Ready() without a deadline, opens its streams once and, if the learner goes away,
its threads end and the actor keeps acting on stale weights forever (issue #3979). Here:

- a parameter thread loops {Ready() with a deadline -> StreamParameters -> copy each chunk straight into
  a reused staging buffer (`app.actor.staging`, `pirl/params/v2`)}; on any error it backs off
  (exponential, jittered, capped) and starts over, so a restarted learner is picked up and its (possibly
  resumed) weights arrive before anything else. The stream is read as raw serialized messages (same
  bytes as LeRobot's, parsed by `app.transport.chunks`) to skip protobuf's copies of 2 MB chunks;
- a sender thread drains one bounded outbox (rollouts and episode stats, in order), one gRPC call per
  payload with a deadline, retrying a payload until it is delivered or refused as invalid. The learner
  drops duplicates by (actor_id, episode), so a retry after a lost reply is harmless;
- a heartbeat thread calls Ready() every `heartbeat_interval_s` (0.5 s, a quarter of the link timeout
  when that is shorter) while the stream is open. Every reply from the learner (a Ready, a parameter
  chunk, a send's acknowledgement) feeds the `LinkWatchdog` with the time it arrived; an open but silent
  connection (a black-holed route, a learner frozen with SIGSTOP) therefore runs into the watchdog's
  timeout, which ends the episode and holds the arm. A stream that breaks marks the link lost at once;
- every complete push is checked against the policy (`check`: names, shapes, dtypes, finite values) in
  the receive thread, before the robot loop can see it; a push that fails is refused (logged, counted,
  `ClientStatus.weights_error` until good weights are loaded) and the running weights stay;
- the robot loop only touches non-blocking methods: `latest_parameters()`, `send_rollout()` and
  `send_interaction()` (a full outbox drops its oldest payload and counts it).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from lerobot.transport import services_pb2, services_pb2_grpc

from app.actor.staging import ParameterStaging, StagingBuffer
from app.transport.channel import Backoff, make_channel
from app.transport.chunks import TransferState, parse_parameters_frame
from app.transport.codec import (
    DecodeError,
    Rollout,
    encode_interaction,
    encode_rollout,
    to_messages,
)
from app.transport.config import TransportConfig
from app.transport.params import ParameterAssembler, Parameters
from hardware.watchdog import LinkWatchdog

log = logging.getLogger("pirl.actor.client")

# Errors that retrying cannot fix: the payload is dropped (and logged) instead of retried forever.
_FATAL_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass
class ClientStatus:
    """What the actor shows about its link (console, progress lines)."""

    connected: bool = False
    reconnects: int = 0
    last_error: str = ""
    parameters_received: int = 0
    sent: int = 0
    dropped: int = 0
    refused: int = 0
    pending: int = 0
    rtt_ms: float | None = None  # round trip of the last small message (episode stats) to the learner
    heard_s_ago: float | None = None  # seconds since the last traffic from the learner (None: never)
    weights_refused: int = 0  # pushes refused (malformed, or not fitting the policy)
    # Why the newest refused push was refused; kept until weights are loaded again (empty: none refused).
    weights_error: str = ""


#: Heartbeat period ceiling (s); the period is also at most a quarter of the link timeout.
HEARTBEAT_INTERVAL_S = 0.5


class LearnerClient:
    """See the module docstring. `link`: the watchdog fed with the learner's traffic (None: a private
    one with the default timeout); `check(params)` raises `DecodeError` for a push to refuse."""

    def __init__(
        self,
        cfg: TransportConfig,
        actor_id: str,
        max_outbox: int = 64,
        *,
        link: LinkWatchdog | None = None,
        check: Callable[[Parameters], None] | None = None,
    ):
        cfg.validate()
        self.cfg = cfg
        self.actor_id = actor_id
        self.link = link if link is not None else LinkWatchdog(start_ok=False)
        self.check = check
        self.heartbeat_interval_s = min(HEARTBEAT_INTERVAL_S, self.link.timeout_s / 4)
        self._last_heard: float | None = None
        self._heartbeat_call: Any = None
        self._channel = make_channel(cfg, actor_id=actor_id)
        self._stub = services_pb2_grpc.LearnerServiceStub(self._channel)
        service = services_pb2.DESCRIPTOR.services_by_name["LearnerService"].full_name
        # StreamParameters without protobuf parsing: each message arrives as its serialized bytes.
        self._stream_parameters = self._channel.unary_stream(
            f"/{service}/StreamParameters",
            request_serializer=services_pb2.Empty.SerializeToString,
            response_deserializer=None,
        )
        self._outbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=max_outbox)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._staging = ParameterStaging()
        self._stream: Any = None
        self._in_flight = 0
        self._status = ClientStatus()
        self._threads = [
            threading.Thread(target=self._parameter_loop, name=f"{actor_id}-params", daemon=True),
            threading.Thread(target=self._send_loop, name=f"{actor_id}-send", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name=f"{actor_id}-heartbeat", daemon=True),
        ]

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self) -> LearnerClient:
        for t in self._threads:
            t.start()
        return self

    def close(self, flush_timeout_s: float = 0.0) -> None:
        """Stop both threads; with `flush_timeout_s` > 0 first try to deliver what is queued."""
        if flush_timeout_s > 0:
            self.flush(flush_timeout_s)
        self._stop.set()
        self._staging.close()
        with self._lock:
            calls = (self._stream, self._heartbeat_call)
        for call in calls:
            if call is not None:
                call.cancel()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5)
        self._channel.close()

    def __enter__(self) -> LearnerClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------- robot-loop side (fast)

    def latest_parameters(self, newer_than: int | None = None) -> Parameters | None:
        """The newest weights received, if their version differs from `newer_than` (never blocks).

        "Differs", not "is greater": a learner restarted without --resume starts again at version 0, and
        the learner is the authority on what the policy is. The tensors are views of a staging buffer
        that is not written until `release(version)`: copy them into the model, then release. Latest
        wins: a newer push received meanwhile replaces these as what this method returns.
        """
        return self._staging.take(newer_than)

    def release(self, version: int) -> None:
        """The caller has copied weights `version` into its model: its staging buffer may now receive the
        next push. `latest_parameters()` then returns None until a newer push arrives; a newer push
        already received is kept. Between pushes the client holds one staging buffer, the size of one push
        (0.9 GB for 450M trainable weights pushed in bf16), reused by the next push, and no tensors."""
        self._staging.release(version)

    def wait_for_parameters(self, timeout_s: float) -> Parameters | None:
        """Block until some weights have arrived (start-up only: the actor must not act before); release
        them like `latest_parameters()`'s."""
        return self._staging.wait(timeout_s, self._stop.is_set)

    def send_rollout(self, rollout: Rollout) -> None:
        self._enqueue("rollout", encode_rollout(rollout))

    def send_interaction(self, message: dict[str, Any]) -> None:
        self._enqueue("interaction", encode_interaction(message))

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued has been delivered (or refused). True if the outbox emptied."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._outbox.empty() and self._in_flight == 0:
                    return True
            time.sleep(0.05)
        return False

    @property
    def status(self) -> ClientStatus:
        with self._lock:
            s = ClientStatus(**self._status.__dict__)
            s.pending = self._outbox.qsize() + self._in_flight
            if self._last_heard is not None:
                s.heard_s_ago = time.monotonic() - self._last_heard
            return s

    def note_refused(self, version: int | None, why: str) -> None:
        """A push was refused (here, or by the caller after `latest_parameters()`): count it and keep the
        reason visible in `status.weights_error` until `note_loaded()`."""
        with self._lock:
            self._status.weights_refused += 1
            self._status.weights_error = why
            self._status.last_error = why  # the newest error, as before (a reconnect clears this one)
        log.error("refused weights%s from the learner: %s", "" if version is None else f" v{version}", why)

    def note_loaded(self, version: int) -> None:
        """Weights `version` were checked and loaded: no refusal is pending any more."""
        with self._lock:
            self._status.weights_error = ""

    # ------------------------------------------------------------------------------------- threads

    def _enqueue(self, kind: str, payload: bytes) -> None:
        while True:
            try:
                self._outbox.put_nowait((kind, payload))
                return
            except queue.Full:
                try:
                    dropped_kind, _ = self._outbox.get_nowait()
                except queue.Empty:
                    continue
                with self._lock:
                    self._status.dropped += 1
                log.warning("outbox full (learner unreachable?): dropped the oldest %s", dropped_kind)

    def _parameter_loop(self) -> None:
        backoff = Backoff(self.cfg)
        while not self._stop.is_set():
            try:
                self._stub.Ready(services_pb2.Empty(), timeout=self.cfg.ready_timeout_s)
                stream = self._stream_parameters(services_pb2.Empty())
                with self._lock:
                    self._stream = stream
                    if self._status.parameters_received or self._status.last_error:
                        self._status.reconnects += 1
                    self._status.connected = True
                    self._status.last_error = ""
                self._heard()  # the Ready reply
                if self._stop.is_set():
                    stream.cancel()
                backoff.reset()
                self._receive(stream)
                self._lost("parameter stream ended")
            except grpc.RpcError as err:
                if self._stop.is_set():
                    break
                self._lost(f"{err.code().name}: {err.details()}")
            except DecodeError as err:  # a frame that is not a Parameters message: the stream is unusable
                self._lost(f"bad parameter stream from the learner: {err}")
            except Exception as err:  # noqa: BLE001 - this thread must outlive any surprise
                log.exception("parameter stream failed")
                self._lost(f"parameter stream failed: {err!r}")
            self._stop.wait(backoff.next())
        self._staging.close()

    def _receive(self, stream: Any) -> None:
        """Copy each chunk into the staging buffer of the push it belongs to; check complete pushes and
        hand them over (or refuse them). No local keeps a push's tensors once handed over (see release()).

        A push whose payload is malformed (its header, its length) is refused like one that does not fit
        the policy: the rest of its chunks are skipped, the stream stays open (a learner that keeps pushing
        weights this actor cannot use must not also cost it the link) and the running weights stay."""
        assembler: ParameterAssembler[StagingBuffer] = ParameterAssembler(
            self._staging.acquire, self._staging.discard
        )
        skipping = False  # the rest of a refused payload, up to its END chunk
        try:
            for raw in stream:
                self._heard()
                state, data = parse_parameters_frame(raw)
                if skipping:
                    if state != TransferState.TRANSFER_BEGIN:
                        skipping = state != TransferState.TRANSFER_END
                        continue
                    skipping = False
                try:
                    done = assembler.feed(state, data)
                except DecodeError as err:
                    skipping = state != TransferState.TRANSFER_END
                    self.note_refused(None, str(err))
                    continue
                if done is not None:
                    params, buf = done
                    del done
                    with self._lock:
                        self._status.parameters_received += 1
                    if self._accept(params):
                        self._staging.complete(params, buf)
                        log.debug("received parameters v%d", params.version)
                    else:
                        self._staging.discard(buf)
                    del params, buf
        finally:
            assembler.abort()  # a push cut off mid-way: its buffer goes back to the spare slot

    def _accept(self, params: Parameters) -> bool:
        """Run `check` on a complete push (here, off the robot loop: the NaN scan reads every byte)."""
        if self.check is None:
            return True
        t0 = time.monotonic()
        try:
            self.check(params)
        except Exception as err:  # noqa: BLE001 - DecodeError, or any failure to check: never load it
            self.note_refused(params.version, str(err) if isinstance(err, DecodeError) else repr(err))
            return False
        log.debug("checked parameters v%d in %.0f ms", params.version, (time.monotonic() - t0) * 1e3)
        return True

    def _heard(self) -> None:
        """Something arrived from the learner: feed the link watchdog (only while the parameter stream is
        up: a reply on a connection whose stream broke does not bring the link back)."""
        with self._lock:
            if not self._status.connected:
                return
            self._last_heard = now = time.monotonic()
            self.link.heartbeat(at=now)

    def _heartbeat_loop(self) -> None:
        """Ready() every `heartbeat_interval_s` while the stream is up; one call at a time. A reply feeds
        the watchdog; a call that fails or stays unanswered feeds nothing (the watchdog's timeout decides,
        so one slow reply on a busy learner is not a loss). Its deadline is the link timeout: a frozen
        learner's late reply still counts the moment it comes."""
        interval = self.heartbeat_interval_s
        while not self._stop.is_set():
            t0 = time.monotonic()
            with self._lock:
                connected = self._status.connected
            if connected:
                try:
                    call = self._stub.Ready.future(services_pb2.Empty(), timeout=self.link.timeout_s)
                    with self._lock:
                        self._heartbeat_call = call
                    if self._stop.is_set():
                        call.cancel()
                    call.result()
                    self._heard()
                except grpc.RpcError as err:
                    if self._stop.is_set():
                        break
                    log.debug("heartbeat: %s", err.code().name if hasattr(err, "code") else err)
                except grpc.FutureCancelledError:
                    break
                finally:
                    with self._lock:
                        self._heartbeat_call = None
            self._stop.wait(max(0.0, interval - (time.monotonic() - t0)))

    def _lost(self, why: str) -> None:
        with self._lock:
            was = self._status.connected
            self._status.connected = False
            self._status.last_error = why
            self._stream = None
            self.link.lost(why)
        if was:
            log.warning("lost the learner (%s); reconnecting with back-off", why)
        else:
            log.debug("learner not reachable: %s", why)

    def _send_loop(self) -> None:
        backoff = Backoff(self.cfg)
        while not self._stop.is_set():
            try:
                kind, payload = self._outbox.get(timeout=0.2)
            except queue.Empty:
                continue
            with self._lock:
                self._in_flight = 1
            try:
                self._deliver(kind, payload, backoff)
            finally:
                with self._lock:
                    self._in_flight = 0

    def _deliver(self, kind: str, payload: bytes, backoff: Backoff) -> None:
        call, message = (
            (self._stub.SendTransitions, services_pb2.Transition)
            if kind == "rollout"
            else (self._stub.SendInteractions, services_pb2.InteractionMessage)
        )
        while not self._stop.is_set():
            try:
                t0 = time.monotonic()
                call(to_messages(payload, message), timeout=self.cfg.send_timeout_s)
                backoff.reset()
                self._heard()
                with self._lock:
                    self._status.sent += 1
                    if kind == "interaction":  # small: its call time is the link's round trip
                        self._status.rtt_ms = (time.monotonic() - t0) * 1e3
                return
            except grpc.RpcError as err:
                if err.code() in _FATAL_CODES:
                    with self._lock:
                        self._status.refused += 1
                        self._status.last_error = f"{err.code().name}: {err.details()}"
                    log.error("learner refused a %s: %s: %s", kind, err.code().name, err.details())
                    return
                log.debug("send of a %s failed (%s); retrying", kind, err.code().name)
                self._stop.wait(backoff.next())
