"""Payload codec: round trips, and refusal of anything that is not weights-only tensors or JSON."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from lerobot.transport import services_pb2
from lerobot.transport.utils import CHUNK_SIZE

from app.transport.codec import (
    DecodeError,
    Parameters,
    Rollout,
    decode_interaction,
    decode_parameters,
    decode_rollout,
    encode_interaction,
    encode_parameters,
    encode_rollout,
    iter_payloads,
    to_messages,
)


def test_parameters_round_trip_and_bf16_halves_the_bytes():
    state = {"w": torch.randn(64, 64), "steps": torch.tensor(3)}
    p = Parameters(version=7, state=state, run_id="r1")
    full, half = encode_parameters(p), encode_parameters(p, bf16=True)
    back = decode_parameters(full)
    assert back.version == 7 and back.run_id == "r1" and back.dtype == "float32"
    assert torch.equal(back.state["w"], state["w"])
    small = decode_parameters(half)
    assert small.dtype == "bfloat16" and small.state["w"].dtype == torch.bfloat16
    assert small.state["steps"].dtype == torch.int64  # integers are never cast
    assert torch.allclose(small.state["w"].float(), state["w"], atol=2e-2)
    assert len(half) < 0.6 * len(full)


def test_rollout_round_trip_keeps_tensors_and_meta():
    r = Rollout("a0", 5, {"obs": torch.zeros(3, 4), "logprob": torch.ones(3)}, {"success": True, "steps": 30})
    back = decode_rollout(encode_rollout(r))
    assert back.key == ("a0", 5) and back.meta == {"success": True, "steps": 30}
    assert torch.equal(back.batch["obs"], r.batch["obs"])


def test_rollout_refuses_non_tensor_values_and_odd_meta():
    with pytest.raises(TypeError):
        encode_rollout(Rollout("a", 0, {"x": [1, 2]}))  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        encode_rollout(Rollout("a", 0, {}, {"bad": [1]}))


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pirl_pwned_by_codec",))


def test_a_pickle_payload_is_refused_and_never_executed(tmp_path):
    if os.path.exists("/tmp/pirl_pwned_by_codec"):
        os.remove("/tmp/pirl_pwned_by_codec")
    evil = pickle.dumps({"format": "pirl/rollout/v1", "x": _Evil()})
    for decode in (decode_rollout, decode_parameters):
        with pytest.raises(DecodeError):
            decode(evil)
    # torch.save of an arbitrary object is a pickle too: weights_only refuses it
    import io

    buf = io.BytesIO()
    torch.save({"format": "pirl/params/v1", "x": _Evil()}, buf)
    with pytest.raises(DecodeError):
        decode_parameters(buf.getvalue())
    assert not os.path.exists("/tmp/pirl_pwned_by_codec")


def test_lerobot_sac_payloads_get_an_actionable_error():
    from lerobot.transport.utils import python_object_to_bytes, transitions_to_bytes

    with pytest.raises(DecodeError, match="algorithm.type=sac"):
        decode_rollout(transitions_to_bytes([{"state": {"x": torch.zeros(1)}}]))
    with pytest.raises(DecodeError, match="pickle"):
        decode_interaction(python_object_to_bytes({"Episodic reward": 1.0}))


def test_interactions_are_strict_json():
    msg = {"type": "episode", "return": 1.5, "success": True}
    assert decode_interaction(encode_interaction(msg)) == msg
    with pytest.raises(ValueError):
        encode_interaction({"x": float("nan")})
    with pytest.raises(DecodeError):
        decode_interaction(b"[1, 2]")


@pytest.mark.parametrize("size", [0, 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE + 17])
def test_chunking_reassembles_back_to_back_payloads(size):
    a, b = os.urandom(size), os.urandom(100)
    messages = list(to_messages(a, services_pb2.Transition)) + list(to_messages(b, services_pb2.Transition))
    got = list(iter_payloads(messages))
    assert got == ([a, b] if size else [b])  # LeRobot sends nothing for an empty payload
