"""What travels inside LeRobot's byte messages, and how it is (safely) decoded.

The wire contract is LeRobot's: each gRPC message is `{transfer_state, data}` and a payload is split into
2 MB chunks as `lerobot.transport.utils.send_bytes_in_chunks` does (`app.transport.chunks`). Payloads:

- parameters (learner -> actor), `pirl/params/v2` (`app.transport.params`, re-exported here): a length-
  prefixed JSON header (version, run_id, dtype, base_digest, and per tensor name, dtype, shape, offset,
  size) followed by the raw tensor bytes. Only the trainable subset of the policy travels; `base_digest`
  fingerprints the frozen rest, so an actor built differently refuses to act. The actor reassembles it in
  a reused buffer and reads the tensors as views: no unpickling, no payload-sized allocation per push.
  An older pirl's `torch.save` payload (`pirl/params/v1`) is refused with a message saying so.
- rollouts (actor -> learner, SendTransitions): `torch.save` of
  `{"format": "pirl/rollout/v1", "actor_id": str, "episode": int, "meta": {str: int|float|str|bool},
  "batch": {name: tensor}}` - one whole episode of chunk transitions.
- interactions (actor -> learner, SendInteractions): UTF-8 JSON object (episode statistics).

Nothing received is unpickled: parameters are raw bytes behind a validated JSON header, rollouts are
loaded with `torch.load(weights_only=True)` (LeRobot's own `bytes_to_state_dict`), which only rebuilds
tensors and plain containers, and interactions are JSON (LeRobot pickles them; we do not).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from lerobot.transport.utils import bytes_to_state_dict, state_to_bytes

from app.transport.chunks import DecodeError, TransferState, iter_payloads, to_messages
from app.transport.params import PARAMS_FORMAT, Parameters, decode_parameters, encode_parameters

__all__ = [
    "PARAMS_FORMAT",
    "ROLLOUT_FORMAT",
    "DecodeError",
    "FieldSpec",
    "Parameters",
    "Rollout",
    "RolloutSpec",
    "TransferState",
    "decode_interaction",
    "decode_parameters",
    "decode_rollout",
    "encode_interaction",
    "encode_parameters",
    "encode_rollout",
    "iter_payloads",
    "to_messages",
]

ROLLOUT_FORMAT = "pirl/rollout/v1"


def _load(buf: bytes, what: str) -> Any:
    try:
        # torch.load(..., weights_only=True); a sparse tensor is checked while it is rebuilt (unchecked, bad
        # indices would crash the process when it is touched) and refused as a layout afterwards anyway
        with torch.sparse.check_sparse_tensor_invariants(enable=True):
            return bytes_to_state_dict(buf)
    except Exception as err:  # a malformed or hostile payload: refuse it, never fall back to pickle
        raise DecodeError(f"{what}: not a weights-only torch payload ({type(err).__name__}: {err})") from err


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, str, bool)):
            raise TypeError(
                f"rollout meta {str(key)[:60]!r}={str(value)[:60]!r} ({type(value).__name__}): only str "
                "keys and int/float/str/bool values travel"
            )
        out[key] = value
    return out


# -------------------------------------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """One episode of chunk transitions from one actor (the unit SendTransitions carries)."""

    actor_id: str
    episode: int
    batch: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        """Identity used by the learner to drop re-sent duplicates."""
        return (self.actor_id, self.episode)


def encode_rollout(rollout: Rollout) -> bytes:
    batch = {}
    for k, v in rollout.batch.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"rollout batch {k!r} is {type(v).__name__}; only tensors travel")
        batch[k] = v.detach().cpu()
    return state_to_bytes(
        {
            "format": ROLLOUT_FORMAT,
            "actor_id": str(rollout.actor_id),
            "episode": int(rollout.episode),
            "meta": _plain_meta(rollout.meta),
            "batch": batch,
        }
    )


def _names(names: Iterable[object], most: int = 8) -> str:
    """A short, bounded list of (possibly hostile) names for an error message."""
    shown = sorted(str(n)[:60] for n in names)
    return str(shown[:most]) + (f" and {len(shown) - most} more" if len(shown) > most else "")


_ROLLOUT_KEYS = frozenset({"format", "actor_id", "episode", "meta", "batch"})
MAX_ACTOR_ID_CHARS = 256


def decode_rollout(buf: bytes) -> Rollout:
    """A `pirl/rollout/v1` payload -> Rollout, or `DecodeError` saying what is wrong (never another
    exception: whatever the bytes, the learner answers INVALID_ARGUMENT, not UNKNOWN). Only the envelope
    is checked here; what the batch must hold is the learner's `RolloutSpec`."""
    obj = _load(buf, "transitions")
    if isinstance(obj, list):
        raise DecodeError(
            "transitions: got a LeRobot SAC transition list. This learner runs PI-RL; start the SAC "
            "learner (pirl learner --algorithm.type=sac) for a SAC actor."
        )
    if not isinstance(obj, dict) or obj.get("format") != ROLLOUT_FORMAT:
        raise DecodeError("transitions: not a pirl rollout message (format tag missing or wrong)")
    keys = set(obj)
    if keys != _ROLLOUT_KEYS:
        raise DecodeError(
            f"transitions: a {ROLLOUT_FORMAT} message has keys {sorted(_ROLLOUT_KEYS)}; missing "
            f"{sorted(_ROLLOUT_KEYS - keys)}, unknown {_names(keys - _ROLLOUT_KEYS)}"
        )
    actor_id, episode, meta, batch = obj["actor_id"], obj["episode"], obj["meta"], obj["batch"]
    if not isinstance(actor_id, str) or not 0 < len(actor_id) <= MAX_ACTOR_ID_CHARS:
        raise DecodeError(f"transitions: 'actor_id' must be a string of 1..{MAX_ACTOR_ID_CHARS} characters")
    if type(episode) is not int or not -(2**63) <= episode < 2**63:
        raise DecodeError(f"transitions: 'episode' must be a 64-bit integer, got {type(episode).__name__}")
    if not isinstance(meta, dict):
        raise DecodeError(f"transitions: 'meta' must be a dict, got {type(meta).__name__}")
    try:
        meta = _plain_meta(meta)
    except TypeError as err:
        raise DecodeError(f"transitions: {err}") from None
    if not isinstance(batch, dict) or not batch:
        raise DecodeError("transitions: 'batch' must be a non-empty dict of tensors")
    for name, value in batch.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise DecodeError("transitions: 'batch' must map names to tensors")
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized:
            raise DecodeError(
                f"transitions: batch {name[:60]!r} must be a dense CPU tensor (got {value.layout}, "
                f"{value.device.type}{', quantized' if value.is_quantized else ''})"
            )
    return Rollout(actor_id=actor_id, episode=episode, batch=batch, meta=meta)


@dataclass(frozen=True)
class FieldSpec:
    """What one batch tensor of a rollout must be, per row (the leading N is every field's row count)."""

    dtype: torch.dtype
    # Size of each dimension after N. None: any size, but the same in every rollout this learner accepts
    # (fixed by the first one): camera frames, whose size the encoders do not fix.
    shape: tuple[int | None, ...]
    low: int | None = None  # integer fields: smallest allowed value
    high: int | None = None  # integer fields: values must be below this


class RolloutSpec:
    """The batch a learner trains on, field by field (built by the learner from its policy: see
    `app.learner.loop.rollout_spec`). `check(batch)` raises `DecodeError` naming the first problem:
    a missing or unknown field, a dtype, a shape (N >= 1 rows in every field), a non-finite float, an
    integer out of range, or two rows with the same (episode_id, chunk_index). Thread-safe."""

    def __init__(self, fields: Mapping[str, FieldSpec], optional: Iterable[str] = ()):
        self.fields = dict(fields)
        self.optional = frozenset(optional) & set(self.fields)
        self._pinned: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def check(self, batch: Mapping[str, torch.Tensor]) -> int:
        """Validate `batch`; returns its row count N."""
        keys = set(batch)
        missing = sorted(set(self.fields) - self.optional - keys)
        unknown = sorted(keys - set(self.fields))
        if missing or unknown:
            raise DecodeError(
                f"transitions: batch fields do not match the learner's policy: missing {missing}, "
                f"unknown {_names(unknown)}"
            )
        n = None
        for name in sorted(keys):
            spec, t = self.fields[name], batch[name]
            if t.dtype != spec.dtype:
                raise DecodeError(f"transitions: {name!r} is {t.dtype}, the learner expects {spec.dtype}")
            if t.dim() != 1 + len(spec.shape) or any(
                want is not None and got != want for got, want in zip(t.shape[1:], spec.shape, strict=True)
            ):
                raise DecodeError(
                    f"transitions: {name!r} has shape {list(t.shape)}, the learner's policy expects "
                    f"{['N', *('*' if d is None else d for d in spec.shape)]}"
                )
            if n is None:
                n = int(t.shape[0])
            elif t.shape[0] != n:
                raise DecodeError(f"transitions: {name!r} has {t.shape[0]} rows, other fields {n}")
        if not n:
            raise DecodeError("transitions: a rollout needs at least one row (N >= 1)")
        for name in sorted(keys):
            spec, t = self.fields[name], batch[name]
            if t.is_floating_point() or t.is_complex():
                if not bool(torch.isfinite(t).all()):
                    raise DecodeError(f"transitions: {name!r} holds NaN or infinite values")
            elif spec.low is not None or spec.high is not None:
                lo, hi = int(t.min()), int(t.max())
                if (spec.low is not None and lo < spec.low) or (spec.high is not None and hi >= spec.high):
                    raise DecodeError(
                        f"transitions: {name!r} holds values in [{lo}, {hi}], allowed "
                        f"[{spec.low if spec.low is not None else '-inf'}, "
                        f"{spec.high - 1 if spec.high is not None else 'inf'}]"
                    )
        if "episode_id" in keys and "chunk_index" in keys:
            rows = torch.stack(
                [batch["episode_id"].reshape(n).long(), batch["chunk_index"].reshape(n).long()], 1
            )
            if torch.unique(rows, dim=0).shape[0] != n:
                raise DecodeError("transitions: two rows have the same (episode_id, chunk_index)")
        with self._lock:  # free sizes: the same as in every rollout accepted before (they are concatenated)
            pins = {}
            for name in keys:
                spec = self.fields[name]
                if None in spec.shape:
                    got = tuple(int(d) for d in batch[name].shape[1:])
                    pinned = self._pinned.get(name, got)
                    if pinned != got:
                        raise DecodeError(
                            f"transitions: {name!r} rows are {list(got)}, earlier rollouts of this run "
                            f"{list(pinned)} (a camera must keep its frame size for the whole run)"
                        )
                    pins[name] = got
            self._pinned.update(pins)
        return n


# ---------------------------------------------------------------------------------------- interactions


def encode_interaction(message: dict[str, Any]) -> bytes:
    """JSON, never pickle; non-finite floats are refused so the learner's parser stays strict."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")


# Episode statistics the learner averages (`charts/...`): numbers when present.
_NUMERIC_STATS = (
    "episode", "steps", "chunks", "return", "interventions", "intervention_rate", "policy_version_min",
    "policy_version_max", "wall_s", "time",
)  # fmt: skip


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_interaction(buf: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(buf.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DecodeError(
            "interactions: not UTF-8 JSON. A LeRobot SAC actor pickles its interactions; "
            "this learner refuses pickles. Use pirl actor, or the SAC route for a SAC actor."
        ) from err
    if not isinstance(obj, dict):
        raise DecodeError(f"interactions: expected a JSON object, got {type(obj).__name__}")
    for key in _NUMERIC_STATS:
        value = obj.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise DecodeError(f"interactions: {key!r} must be a finite number, got {value!r}")
    return obj


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond float range
        return False
