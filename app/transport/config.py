"""Network settings shared by the learner (server) and the actors (clients).

One dataclass, read by both sides, so a learner and its actors agree on the port, the token and the TLS
files by reading the same config file. Defaults are for loopback: no token, no TLS, short deadlines.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# LeRobot's transport splits every message into 2 MB chunks (`lerobot.transport.utils.CHUNK_SIZE`); a
# gRPC message must hold one chunk plus framing, so anything below this breaks the contract.
MIN_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class TransportConfig:
    # Learner address. Actors connect to it; the learner binds it (use 0.0.0.0 to serve other machines).
    host: str = "127.0.0.1"
    # Learner port. 0 on the learner binds a free port (tests); actors need the real one.
    port: int = 50051
    # Shared secret. When set, every call must carry it (metadata `x-pirl-token`) or is refused with
    # UNAUTHENTICATED. Off by default (loopback). Prefer `token_env` so the secret stays out of files.
    token: str | None = None
    # Name of an environment variable that holds the token (used when `token` is empty).
    token_env: str | None = None
    # TLS: server certificate and key (PEM) on the learner. Both set = the learner serves TLS only.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # TLS: CA certificate (PEM) the actor trusts for the learner's certificate. Set = the actor uses TLS.
    tls_ca: Path | None = None
    # TLS: host name the certificate was issued for, when it differs from `host` (e.g. "localhost").
    tls_server_name: str | None = None
    # HTTP/2 keepalive ping interval (s): a dead peer or a silent NAT drop is noticed within
    # keepalive_s + keepalive_timeout_s, even when no message is flowing.
    keepalive_s: float = 10.0
    # How long (s) to wait for a keepalive ping's answer before declaring the connection dead.
    keepalive_timeout_s: float = 5.0
    # Deadline (s) of the Ready() handshake. LeRobot's Ready has none and can hang forever.
    ready_timeout_s: float = 3.0
    # Deadline (s) of one SendTransitions / SendInteractions call (one message, all its chunks).
    send_timeout_s: float = 30.0
    # Reconnect back-off (s): first wait, growth factor and ceiling; each wait gets +-20 percent jitter.
    backoff_initial_s: float = 0.2
    backoff_factor: float = 2.0
    backoff_max_s: float = 5.0
    # Learner worker threads. Each actor holds one long-lived StreamParameters call plus short sends, so
    # this must exceed 2x the number of actors (LeRobot uses 3, which wedges the second actor).
    server_threads: int = 16
    # Largest gRPC message (bytes) either side accepts. Must hold one 2 MB transport chunk.
    max_message_bytes: int = 8 * 1024 * 1024
    # Largest rollout (one episode, SendTransitions payload) the learner accepts, in bytes; a bigger one is
    # refused with INVALID_ARGUMENT as soon as it passes the limit (the learner never holds more).
    max_rollout_bytes: int = 256 * 1024 * 1024
    # Largest episode-stats message (SendInteractions payload, JSON) the learner accepts, in bytes.
    max_interaction_bytes: int = 1024 * 1024
    # Calls one client connection may have open at once on the learner (a pirl actor needs 3: its parameter
    # stream, one send, a Ready); one more is refused with RESOURCE_EXHAUSTED. Must be below server_threads,
    # so that one client cannot hold every worker.
    max_streams_per_peer: int = 4

    def resolved_token(self) -> str | None:
        """The token to send or require, from `token` or the `token_env` variable (None = no auth)."""
        if self.token:
            return self.token
        if self.token_env:
            value = os.environ.get(self.token_env, "")
            if not value:
                raise ValueError(
                    f"transport.token_env={self.token_env!r} is set but that environment variable is empty; "
                    "export it on both the learner and the actor, or unset transport.token_env."
                )
            return value
        return None

    def validate(self) -> None:
        """Raise a clear error for settings that cannot work."""
        if not (0 <= self.port <= 65535):
            raise ValueError(f"transport.port={self.port} is not a TCP port (0..65535).")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("transport.tls_cert and transport.tls_key must be given together (PEM files).")
        for name in ("tls_cert", "tls_key", "tls_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"transport.{name}={path} does not exist or is not a file.")
        if self.max_message_bytes < MIN_MESSAGE_BYTES:
            raise ValueError(
                f"transport.max_message_bytes={self.max_message_bytes} is below {MIN_MESSAGE_BYTES}: "
                "LeRobot's transport sends 2 MB chunks, so messages would be refused."
            )
        if self.server_threads < 4:
            raise ValueError(
                "transport.server_threads must be >= 4 (one parameter stream per actor plus sends)."
            )
        if not 0 < self.max_rollout_bytes < 2**40 or not 0 < self.max_interaction_bytes < 2**40:
            raise ValueError("transport.max_rollout_bytes and max_interaction_bytes must be > 0 (bytes).")
        if not 3 <= self.max_streams_per_peer < self.server_threads:
            raise ValueError(
                f"transport.max_streams_per_peer={self.max_streams_per_peer} must be >= 3 (an actor's parameter "
                f"stream, one send and a Ready) and below transport.server_threads={self.server_threads}."
            )
        if not self.host:
            raise ValueError("transport.host must be a host name or address (e.g. 127.0.0.1).")
        for name in ("keepalive_s", "keepalive_timeout_s", "ready_timeout_s", "send_timeout_s"):
            value = getattr(self, name)
            if not 0 < value < float("inf"):  # NaN fails too
                raise ValueError(f"transport.{name} must be a number of seconds > 0, got {value}.")
        if not (
            0 < self.backoff_initial_s <= self.backoff_max_s < float("inf")
            and 1 <= self.backoff_factor < float("inf")
        ):
            raise ValueError(
                "transport back-off must satisfy 0 < backoff_initial_s <= backoff_max_s and backoff_factor >= 1."
            )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
