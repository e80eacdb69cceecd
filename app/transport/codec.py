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
    "Parameters",
    "Rollout",
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
        return bytes_to_state_dict(buf)  # torch.load(..., weights_only=True)
    except Exception as err:  # a malformed or hostile payload: refuse it, never fall back to pickle
        raise DecodeError(f"{what}: not a weights-only torch payload ({type(err).__name__}: {err})") from err


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, str, bool)):
            raise TypeError(
                f"rollout meta {key!r}={value!r}: only str keys and int/float/str/bool values travel"
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


def decode_rollout(buf: bytes) -> Rollout:
    obj = _load(buf, "transitions")
    if isinstance(obj, list):
        raise DecodeError(
            "transitions: got a LeRobot SAC transition list. This learner runs PI-RL; start the SAC "
            "learner (pirl learner --algorithm.type=sac) for a SAC actor."
        )
    if not isinstance(obj, dict) or obj.get("format") != ROLLOUT_FORMAT:
        raise DecodeError("transitions: not a pirl rollout message (format tag missing or wrong)")
    batch = obj["batch"]
    if not isinstance(batch, dict) or not all(isinstance(v, torch.Tensor) for v in batch.values()):
        raise DecodeError("transitions: 'batch' must map names to tensors")
    return Rollout(
        actor_id=str(obj["actor_id"]), episode=int(obj["episode"]), batch=batch, meta=dict(obj["meta"])
    )


# ---------------------------------------------------------------------------------------- interactions


def encode_interaction(message: dict[str, Any]) -> bytes:
    """JSON, never pickle; non-finite floats are refused so the learner's parser stays strict."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")


def decode_interaction(buf: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(buf.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DecodeError(
            "interactions: not UTF-8 JSON. A LeRobot SAC actor pickles its interactions; "
            "this learner refuses pickles. Use pirl actor, or the SAC route for a SAC actor."
        ) from err
    if not isinstance(obj, dict):
        raise DecodeError(f"interactions: expected a JSON object, got {type(obj).__name__}")
    return obj
