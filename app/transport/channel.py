"""gRPC channel and server construction with what LeRobot's runtime lacks (its issue #3979).

LeRobot's learner builds `grpc.server(ThreadPoolExecutor(3))` on an insecure port and its actor an insecure
channel with retries but no keepalive, no deadlines and no reconnect tuning. Here both sides get:
HTTP/2 keepalive (a dead peer is noticed without traffic), fast reconnect back-off, a worker pool sized for
several actors, optional shared-token authentication (an interceptor on each side) and optional TLS.
The service contract itself (`lerobot.transport.services_pb2_grpc.LearnerService`) is unchanged.
"""

from __future__ import annotations

import collections
import hmac
import random
import threading
from concurrent import futures
from pathlib import Path

import grpc

from app.transport.config import TransportConfig

#: Metadata key carrying the shared token. Lower-case, as gRPC requires.
TOKEN_METADATA_KEY = "x-pirl-token"
#: Metadata key an actor uses to name itself (shown in learner logs and episode stats).
ACTOR_ID_METADATA_KEY = "x-pirl-actor-id"


def _keepalive_options(cfg: TransportConfig) -> list[tuple[str, int]]:
    """HTTP/2 keepalive: a ping after `keepalive_s` without traffic, the connection closed (every call on it
    fails with UNAVAILABLE) when its ack is `keepalive_timeout_s` late.

    gRPC core (1.85 here) times a keepalive ping out after `grpc.http2.ping_timeout_ms`, default 60 s, not
    after `keepalive_timeout_ms`: with only the latter a SIGSTOPped learner's connection stayed open for a
    minute (measured: no close within 25 s with keepalive 2 s / timeout 1 s). Both are set to the timeout;
    with both, a frozen peer's connection closes after 2.6 s (2 s / 1 s) and 14.6 s (the 10 s / 5 s
    defaults), `tests/app/actor/test_link_loss.py`."""
    timeout_ms = int(cfg.keepalive_timeout_s * 1000)
    return [
        ("grpc.keepalive_time_ms", int(cfg.keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def channel_options(cfg: TransportConfig) -> list[tuple[str, int | str]]:
    """Client options: message size, keepalive, and reconnect back-off capped at `backoff_max_s`.

    gRPC's default reconnect back-off grows to 120 s, which after a learner restart leaves an actor idle
    for minutes; we cap it with our own settings. gRPC-level retries stay off: the client retries whole
    messages itself, with deadlines, so it knows what was delivered.
    """
    opts: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", int(cfg.backoff_initial_s * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(cfg.backoff_initial_s * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(cfg.backoff_max_s * 1000)),
        # Its own connection per channel (gRPC shares one between channels of a process by default): the
        # learner limits calls per connection (`max_streams_per_peer`), so two clients must not share one.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    opts += _keepalive_options(cfg)
    if cfg.tls_ca is not None and cfg.tls_server_name:
        opts.append(("grpc.ssl_target_name_override", cfg.tls_server_name))
    return opts


def server_options(cfg: TransportConfig) -> list[tuple[str, int | str]]:
    """Server options: message size, keepalive, and permission for the clients' keepalive pings."""
    opts: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", cfg.max_message_bytes),
        ("grpc.max_send_message_length", cfg.max_message_bytes),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", int(cfg.keepalive_s * 1000 / 2)),
        ("grpc.http2.min_ping_interval_without_data_ms", int(cfg.keepalive_s * 1000 / 2)),
        # No SO_REUSEPORT: a second learner on the same port must fail to bind, not silently share it.
        ("grpc.so_reuseport", 0),
    ]
    opts += _keepalive_options(cfg)
    return opts


# ---------------------------------------------------------------------------------------------- client


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    pass


class _MetadataInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds fixed metadata (token, actor id) to every call, whatever its kind."""

    def __init__(self, metadata: list[tuple[str, str]]):
        self._metadata = metadata

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        metadata = list(d.metadata or []) + self._metadata
        return _CallDetails(
            d.method, d.timeout, metadata, d.credentials, getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )  # fmt: skip

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def make_channel(cfg: TransportConfig, actor_id: str | None = None) -> grpc.Channel:
    """A channel to the learner: TLS when `tls_ca` is set, token and actor id on every call."""
    cfg.validate()
    if cfg.tls_ca is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(cfg.tls_ca).read_bytes())
        channel = grpc.secure_channel(cfg.address, creds, options=channel_options(cfg))
    else:
        channel = grpc.insecure_channel(cfg.address, options=channel_options(cfg))
    metadata = []
    token = cfg.resolved_token()
    if token:
        metadata.append((TOKEN_METADATA_KEY, token))
    if actor_id:
        metadata.append((ACTOR_ID_METADATA_KEY, actor_id))
    if metadata:
        channel = grpc.intercept_channel(channel, _MetadataInterceptor(metadata))
    return channel


# ---------------------------------------------------------------------------------------------- server


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses every call whose `x-pirl-token` metadata does not match (constant-time compare)."""

    def __init__(self, token: str):
        self._token = token.encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        given = dict(handler_call_details.invocation_metadata or ()).get(TOKEN_METADATA_KEY, "")
        if hmac.compare_digest(given.encode(), self._token) or handler is None:
            return handler
        return _abort_like(handler, grpc.StatusCode.UNAUTHENTICATED, "missing or wrong x-pirl-token")


def _abort_like(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as `handler` that only aborts (kinds must match)."""

    def abort(_request, context):
        context.abort(code, details)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)


class PeerCallLimit(grpc.ServerInterceptor):
    """At most `limit` calls open at once per peer (one client connection: `context.peer()`); one more is
    refused with RESOURCE_EXHAUSTED (the client backs off and retries). A client holding the token can
    then keep at most `limit` of the server's workers busy (uploads that never end, streams it never
    reads), not all of them. A pirl actor needs 3 at most: its parameter stream, one send, a Ready."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._open: collections.Counter[str] = collections.Counter()

    def open_calls(self, peer: str | None = None) -> int:
        with self._lock:
            return self._open[peer] if peer is not None else sum(self._open.values())

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap_behaviour(handler, self._enter)

    def _enter(self, context) -> None:
        """Count the call against its peer until it ends, or refuse it."""
        peer = context.peer() or "?"
        with self._lock:
            if self._open[peer] >= self.limit:
                refused = True
            else:
                refused = False
                self._open[peer] += 1
        if refused:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this connection already has {self.limit} calls open (transport.max_streams_per_peer)",
            )
        if not context.add_callback(lambda: self._leave(peer)):  # the call already ended
            self._leave(peer)

    def _leave(self, peer: str) -> None:
        with self._lock:
            self._open[peer] -= 1
            if self._open[peer] <= 0:
                del self._open[peer]


def _wrap_behaviour(handler: grpc.RpcMethodHandler, enter) -> grpc.RpcMethodHandler:
    """`handler` with `enter(context)` run first in the call's own thread (kinds must match)."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        inner = handler.stream_stream

        def stream_stream(request_iterator, context):
            enter(context)
            yield from inner(request_iterator, context)

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
    if handler.request_streaming:
        inner = handler.stream_unary

        def stream_unary(request_iterator, context):
            enter(context)
            return inner(request_iterator, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    if handler.response_streaming:
        inner = handler.unary_stream

        def unary_stream(request, context):
            enter(context)
            yield from inner(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    inner = handler.unary_unary

    def unary_unary(request, context):
        enter(context)
        return inner(request, context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)


def make_server(cfg: TransportConfig) -> tuple[grpc.Server, int]:
    """A (not yet started) server bound to `cfg.address`; returns it and the bound port.

    The worker pool has `server_threads` threads and `maximum_concurrent_rpcs` equal to it, so a call
    beyond capacity is refused with RESOURCE_EXHAUSTED (the client backs off) instead of queueing forever.
    One connection holds at most `max_streams_per_peer` of those workers (`PeerCallLimit`; validate()
    keeps it below `server_threads`), so one client cannot starve the others.
    """
    cfg.validate()
    interceptors: list[grpc.ServerInterceptor] = []
    token = cfg.resolved_token()
    if token:
        interceptors.append(TokenAuthInterceptor(token))  # first: a caller without the token holds nothing
    interceptors.append(PeerCallLimit(cfg.max_streams_per_peer))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.server_threads, thread_name_prefix="learner-grpc"),
        options=server_options(cfg),
        interceptors=interceptors,
        maximum_concurrent_rpcs=cfg.server_threads,
    )
    if cfg.tls_cert is not None:
        creds = grpc.ssl_server_credentials(
            [(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())]
        )
        port = server.add_secure_port(cfg.address, creds)
    else:
        port = server.add_insecure_port(cfg.address)
    if port == 0:
        raise OSError(f"could not bind the learner to {cfg.address}: is another learner running on it?")
    return server, port


class Backoff:
    """Exponential back-off with +-20 % jitter, reset after a success."""

    def __init__(self, cfg: TransportConfig, rng: random.Random | None = None):
        self._cfg = cfg
        self._rng = rng or random.Random()
        self._next = cfg.backoff_initial_s

    def next(self) -> float:
        """Seconds to wait before the next attempt (then grows the wait)."""
        wait = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._next * self._cfg.backoff_factor, self._cfg.backoff_max_s)
        return wait

    def reset(self) -> None:
        self._next = self._cfg.backoff_initial_s
