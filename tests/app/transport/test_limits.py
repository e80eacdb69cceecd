"""Hostile-input limits of the transport: payload size cap and missing END (chunks), the rollout envelope
and RolloutSpec (codec), calls per connection (channel), and the options' checks (config)."""

from __future__ import annotations

import threading

import grpc
import pytest
import torch
from lerobot.transport import services_pb2
from lerobot.transport.utils import state_to_bytes

from app.transport.channel import PeerCallLimit, channel_options
from app.transport.chunks import DecodeError, TransferState, iter_payloads, to_messages
from app.transport.codec import (
    ROLLOUT_FORMAT,
    FieldSpec,
    Rollout,
    RolloutSpec,
    decode_interaction,
    decode_rollout,
    encode_rollout,
)
from app.transport.config import TransportConfig

B, M, E = TransferState.TRANSFER_BEGIN, TransferState.TRANSFER_MIDDLE, TransferState.TRANSFER_END


def msg(state, data: bytes = b"xx"):
    return services_pb2.Transition(transfer_state=state, data=data)


def test_a_payload_past_the_cap_is_refused_as_soon_as_it_passes_it():
    pulled: list[int] = []

    def endless():
        yield msg(B, bytes(10))
        while True:
            pulled.append(1)
            yield msg(M, bytes(10))

    with pytest.raises(DecodeError, match="limit of 35 bytes"):
        list(iter_payloads(endless(), max_bytes=35))
    assert len(pulled) == 3  # 40 bytes seen: not one message more
    exact = list(to_messages(bytes(35), services_pb2.Transition))
    assert list(iter_payloads(exact, max_bytes=35)) == [bytes(35)]


@pytest.mark.parametrize(
    "messages",
    [[msg(B)], [msg(B), msg(M)], [msg(E), msg(B)], [msg(M)]],
    ids=["begin only", "no end", "end then begin", "middle only"],
)
def test_a_stream_that_ends_mid_payload_is_refused(messages):
    with pytest.raises(DecodeError, match="TRANSFER_END"):
        list(iter_payloads(messages))


def test_an_empty_stream_is_no_payload_and_unknown_states_are_refused():
    assert list(iter_payloads([])) == []
    with pytest.raises(DecodeError, match="unknown transfer state"):
        list(iter_payloads([msg(7)]))


def _envelope(**kw) -> bytes:
    obj = {"format": ROLLOUT_FORMAT, "actor_id": "a", "episode": 0, "meta": {}, "batch": {"x": torch.ones(2)}}
    obj.update(kw)
    return state_to_bytes({k: v for k, v in obj.items() if v is not ...})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"batch": ...}, "missing \\['batch'\\]"),
        ({"meta": ...}, "missing \\['meta'\\]"),
        ({"extra": 1}, "unknown \\['extra'\\]"),
        ({"batch": {}}, "non-empty"),
        ({"batch": {"x": [1, 2]}}, "tensors"),
        ({"batch": {"x": torch.ones(2).to_sparse()}}, "dense CPU"),
        ({"episode": "7"}, "64-bit integer"),
        ({"episode": True}, "64-bit integer"),
        ({"actor_id": ""}, "actor_id"),
        ({"actor_id": 3}, "actor_id"),
        ({"meta": [1]}, "'meta' must be a dict"),
        ({"meta": {"k": [1]}}, "only str keys"),
    ],
)
def test_a_bad_rollout_envelope_is_a_decode_error_never_another_exception(changes, match):
    with pytest.raises(DecodeError, match=match):
        decode_rollout(_envelope(**changes))


def test_episode_stats_must_carry_finite_numbers():
    assert decode_interaction(b'{"type": "episode", "return": 1.5, "steps": 30}')["steps"] == 30
    for bad in (
        b'{"return": "x"}',
        b'{"steps": NaN}',
        b'{"return": Infinity}',
        b'{"steps": true}',
        b"[" * 10**5,
    ):
        with pytest.raises(DecodeError):
            decode_interaction(bad)


def _spec() -> RolloutSpec:
    return RolloutSpec(
        {
            "obs.observation.state": FieldSpec(torch.float32, (3,)),
            "obs.observation.images.cam": FieldSpec(torch.float32, (3, None, None)),
            "episode_id": FieldSpec(torch.int64, ()),
            "chunk_index": FieldSpec(torch.int64, (), 0),
            "reward": FieldSpec(torch.float32, ()),
            "human_mask": FieldSpec(torch.bool, (2,)),
        },
        optional=("human_mask",),
    )


def _rows(n: int = 2, hw=(4, 5)) -> dict[str, torch.Tensor]:
    return {
        "obs.observation.state": torch.zeros(n, 3),
        "obs.observation.images.cam": torch.zeros(n, 3, *hw),
        "episode_id": torch.full((n,), 9),
        "chunk_index": torch.arange(n),
        "reward": torch.zeros(n),
    }


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("reward"), "missing \\['reward'\\]"),
        (lambda d: d.update(bogus=torch.zeros(2)), "unknown \\['bogus'\\]"),
        (lambda d: d.update(reward=torch.zeros(2, dtype=torch.float64)), "float64"),
        (lambda d: d.update({"obs.observation.state": torch.zeros(2, 4)}), "shape \\[2, 4\\].*\\['N', 3\\]"),
        (lambda d: d.update({"obs.observation.images.cam": torch.zeros(2, 1, 4, 5)}), "images.cam"),
        (lambda d: d.update(reward=torch.zeros(3)), "3 rows"),
        (lambda d: d.update(reward=torch.tensor([0.0, float("nan")])), "NaN"),
        (lambda d: d.update(chunk_index=torch.tensor([0, -1])), "values in \\[-1, 0\\]"),
        (
            lambda d: d.update(chunk_index=torch.zeros(2, dtype=torch.int64)),
            "same \\(episode_id, chunk_index\\)",
        ),
    ],
)
def test_the_spec_refuses_what_the_learner_cannot_train(edit, match):
    d = _rows()
    edit(d)
    with pytest.raises(DecodeError, match=match):
        _spec().check(d)


def test_the_spec_accepts_optional_fields_and_fixes_free_sizes_at_the_first_rollout():
    spec = _spec()
    assert spec.check(_rows()) == 2
    assert spec.check({**_rows(3), "human_mask": torch.zeros(3, 2, dtype=torch.bool)}) == 3
    with pytest.raises(DecodeError, match="N >= 1"):
        spec.check({k: v[:0] for k, v in _rows().items()})
    with pytest.raises(DecodeError, match="frame size"):
        spec.check(_rows(hw=(6, 5)))  # another camera size than the rollouts accepted so far
    assert _spec().check(_rows(hw=(6, 5))) == 2  # a fresh learner takes it


def test_a_rollout_round_trip_still_works():
    r = Rollout("a0", 5, _rows(), {"steps": 30})
    back = decode_rollout(encode_rollout(r))
    assert back.key == ("a0", 5) and back.meta == {"steps": 30}


class _Ctx:
    def __init__(self, peer: str):
        self._peer, self.callbacks, self.aborted = peer, [], None

    def peer(self):
        return self._peer

    def add_callback(self, fn):
        self.callbacks.append(fn)
        return True

    def abort(self, code, details):
        self.aborted = code
        raise RuntimeError(details)


def test_peer_call_limit_counts_calls_per_connection_until_they_end():
    limit = PeerCallLimit(2)
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: "ok")
    wrapped = limit.intercept_service(lambda details: handler, None)
    a = [_Ctx("ipv4:1.2.3.4:1") for _ in range(3)]
    assert wrapped.unary_unary(None, a[0]) == "ok" and wrapped.unary_unary(None, a[1]) == "ok"
    with pytest.raises(RuntimeError, match="max_streams_per_peer"):
        wrapped.unary_unary(None, a[2])
    assert a[2].aborted == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wrapped.unary_unary(None, _Ctx("ipv4:1.2.3.4:2")) == "ok"  # another connection
    a[0].callbacks[0]()  # the first call ended
    assert limit.open_calls("ipv4:1.2.3.4:1") == 1
    assert wrapped.unary_unary(None, _Ctx("ipv4:1.2.3.4:1")) == "ok"
    streaming = grpc.unary_stream_rpc_method_handler(lambda req, ctx: iter([1, 2]))
    gen = limit.intercept_service(lambda details: streaming, None).unary_stream(None, _Ctx("p"))
    assert list(gen) == [1, 2] and limit.open_calls("p") == 1  # released by the call's end callback


def test_each_client_channel_gets_its_own_connection():
    assert ("grpc.use_local_subchannel_pool", 1) in channel_options(TransportConfig())


def test_new_options_are_checked():
    TransportConfig().validate()
    with pytest.raises(ValueError, match="max_streams_per_peer"):
        TransportConfig(max_streams_per_peer=2).validate()
    with pytest.raises(ValueError, match="max_streams_per_peer"):
        TransportConfig(max_streams_per_peer=16, server_threads=16).validate()
    with pytest.raises(ValueError, match="max_rollout_bytes"):
        TransportConfig(max_rollout_bytes=0).validate()
    with pytest.raises(ValueError, match="max_interaction_bytes"):
        TransportConfig(max_interaction_bytes=-1).validate()


def test_the_limit_is_thread_safe():
    limit = PeerCallLimit(50)
    handler = grpc.unary_unary_rpc_method_handler(lambda req, ctx: "ok")
    wrapped = limit.intercept_service(lambda details: handler, None)
    ctxs = [_Ctx("p") for _ in range(50)]
    threads = [threading.Thread(target=wrapped.unary_unary, args=(None, c)) for c in ctxs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limit.open_calls("p") == 50
    for c in ctxs:
        c.callbacks[0]()
    assert limit.open_calls() == 0
