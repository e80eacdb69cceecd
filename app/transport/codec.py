"""What travels inside LeRobot's byte messages, and how it is (safely) decoded.

The wire contract is LeRobot's: each gRPC message is `{transfer_state, data}` and a payload is split into
2 MB chunks by `lerobot.transport.utils.send_bytes_in_chunks`. Payloads:

- parameters (learner -> actor): `torch.save` of
  `{"format": "pirl/params/v1", "version": int, "run_id": str, "dtype": "float32"|"bfloat16",
  "base_digest": str, "state": {name: tensor}}` (only the trainable subset of the policy;
  `base_digest` fingerprints the frozen rest, so an actor built differently refuses to act).
- rollouts (actor -> learner, SendTransitions): `torch.save` of
  `{"format": "pirl/rollout/v1", "actor_id": str, "episode": int, "meta": {str: int|float|str|bool},
  "batch": {name: tensor}}` - one whole episode of chunk transitions.
- interactions (actor -> learner, SendInteractions): UTF-8 JSON object (episode statistics).

Nothing received is unpickled: tensors are loaded with `torch.load(weights_only=True)` (LeRobot's own
`bytes_to_state_dict`), which only rebuilds tensors and plain containers, and interactions are JSON
(LeRobot pickles them; we do not).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from lerobot.transport import services_pb2
from lerobot.transport.utils import bytes_to_state_dict, send_bytes_in_chunks, state_to_bytes

PARAMS_FORMAT = "pirl/params/v1"
ROLLOUT_FORMAT = "pirl/rollout/v1"

TransferState = services_pb2.TransferState  # type: ignore[attr-defined]


class DecodeError(ValueError):
    """A payload that is not what this end of the channel expects (message says what and what to do)."""


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


# ------------------------------------------------------------------------------------------ parameters


@dataclass
class Parameters:
    """A versioned set of policy weights as pushed by the learner."""

    version: int
    state: dict[str, torch.Tensor]
    run_id: str = ""
    dtype: str = "float32"
    base_digest: str = ""  # hash of the weights that do NOT travel (frozen encoder, buffers)


def encode_parameters(params: Parameters, bf16: bool = False) -> bytes:
    """Serialise weights; `bf16=True` halves the bytes (floating tensors only; the actor casts back)."""
    state = {
        k: (v.detach().to("cpu", torch.bfloat16) if bf16 and v.is_floating_point() else v.detach().cpu())
        for k, v in params.state.items()
    }
    return state_to_bytes(
        {
            "format": PARAMS_FORMAT,
            "version": int(params.version),
            "run_id": str(params.run_id),
            "dtype": "bfloat16" if bf16 else "float32",
            "base_digest": str(params.base_digest),
            "state": state,
        }
    )


def decode_parameters(buf: bytes) -> Parameters:
    obj = _load(buf, "parameters")
    if not isinstance(obj, dict) or obj.get("format") != PARAMS_FORMAT:
        raise DecodeError(
            "parameters: not a pirl parameter message. Is the actor talking to a LeRobot SAC learner? "
            "Start both sides with the same --algorithm.type."
        )
    state = obj["state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DecodeError("parameters: 'state' must map names to tensors")
    return Parameters(
        version=int(obj["version"]),
        state=state,
        run_id=str(obj["run_id"]),
        dtype=str(obj["dtype"]),
        base_digest=str(obj.get("base_digest", "")),
    )


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


# ------------------------------------------------------------------------------------------- chunking


def to_messages(payload: bytes, message_class: Any) -> Iterator[Any]:
    """Split one payload into LeRobot transport messages (2 MB chunks, BEGIN/MIDDLE/END)."""
    return send_bytes_in_chunks(payload, message_class, silent=True)


def iter_payloads(messages: Iterable[Any]) -> Iterator[bytes]:
    """Reassemble payloads from a stream of LeRobot transport messages.

    Same states as `lerobot.transport.utils.receive_bytes_in_chunks`, as a generator (LeRobot's variant
    only knows queues and a shutdown event, and a stream can be cancelled mid-payload).
    """
    parts: list[bytes] = []
    for item in messages:
        state = item.transfer_state
        if state == TransferState.TRANSFER_BEGIN:
            parts = [item.data]
        elif state == TransferState.TRANSFER_MIDDLE:
            parts.append(item.data)
        elif state == TransferState.TRANSFER_END:
            parts.append(item.data)
            payload = b"".join(parts)
            parts = []  # before the yield: the consumer decodes while the pieces would still be held
            yield payload
            del payload
        else:
            raise DecodeError(f"unknown transfer state {state}")
