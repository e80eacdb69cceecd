"""Hostile input over real loopback gRPC: a learner (its policy's RolloutSpec, spool, byte and stream
limits) refuses each bad rollout kind with the right status code and keeps training a good actor."""

from __future__ import annotations

import threading
import time

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc
from lerobot.transport.utils import state_to_bytes

from app.actor.client import LearnerClient
from app.learner.loop import Learner
from app.transport.channel import make_channel
from app.transport.chunks import TransferState
from app.transport.codec import ROLLOUT_FORMAT, Rollout, encode_interaction, encode_rollout, to_messages
from app.transport.config import TransportConfig
from benchmarks import hostile

INVALID, EXHAUSTED = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED
CAP = 4 * 1024 * 1024  # transport.max_rollout_bytes in these tests (a good rollout is a few kB)


def client_cfg(port: int, **kw) -> TransportConfig:
    base = dict(port=port, ready_timeout_s=1.0, send_timeout_s=5.0, backoff_initial_s=0.05, backoff_max_s=0.3)
    return TransportConfig(**(base | kw))


def good_batch(learner: Learner, episode_id: int, chunks: int = 6) -> dict[str, torch.Tensor]:
    """A rollout an actor of this learner would send (shared with benchmarks/faults.py)."""
    return hostile.good_batch(learner.policy, episode_id, chunks, version=learner.algorithm.policy_version)


def send(port: int, messages: list, method: str = "SendTransitions") -> tuple[grpc.StatusCode, str]:
    """One call on its own connection; (status code, details)."""
    ch = make_channel(client_cfg(port))
    try:
        getattr(services_pb2_grpc.LearnerServiceStub(ch), method)(iter(messages), timeout=20)
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as err:
        return err.code(), err.details()
    finally:
        ch.close()


def rollout_messages(payload: bytes) -> list:
    return list(to_messages(payload, services_pb2.Transition))


@pytest.fixture
def served(run_config):
    """A learner whose loop runs in a thread, on a free port."""
    learner = Learner(
        run_config(f"--transport.max_rollout_bytes={CAP}", "--learner.save_every=0"), progress=None
    )
    learner.start_server()
    died: list[BaseException] = []

    def run():
        try:
            learner.run()
        except BaseException as err:  # noqa: BLE001 - the test asserts that nothing ends the loop
            died.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield learner, thread, died
    learner.shutdown.set()
    thread.join(30)


def _hostile_batches(learner: Learner) -> dict[str, dict[str, torch.Tensor]]:
    """Every hostile rollout kind (shared with benchmarks/faults.py)."""
    return hostile.hostile_batches(learner.policy, learner.algorithm.policy_version)


def test_every_hostile_rollout_kind_is_refused_and_a_good_actor_keeps_training(served):
    learner, thread, died = served
    port = learner.port
    refused: dict[str, tuple[grpc.StatusCode, str]] = {}
    for kind, batch in _hostile_batches(learner).items():
        refused[kind] = send(port, rollout_messages(encode_rollout(Rollout("evil", 0, batch, {"steps": 30}))))
    envelope = {"format": ROLLOUT_FORMAT, "actor_id": "evil", "episode": 1, "meta": {}}
    refused["missing batch"] = send(port, rollout_messages(state_to_bytes(envelope)))
    refused["unknown envelope key"] = send(
        port, rollout_messages(state_to_bytes({**envelope, "batch": good_batch(learner, 902), "x": 1}))
    )
    bad_meta = encode_rollout(Rollout("evil", 2, good_batch(learner, 903), {"steps": "many"}))
    refused["meta steps not an integer"] = send(port, rollout_messages(bad_meta))
    refused["bad episode stats"] = send(
        port, list(to_messages(b'{"type": "episode", "return": "high"}', services_pb2.InteractionMessage)),
        method="SendInteractions",
    )  # fmt: skip
    for kind, (code, details) in refused.items():
        assert code == INVALID, f"{kind}: {code} {details}"
        assert details, kind
    assert "(episode_id, chunk_index)" in refused["duplicate ids"][1]
    assert "observation.state" in refused["wrong obs shape"][1]
    assert "NaN" in refused["NaN values"][1]
    assert "'evil'" in refused["unknown key"][1] and "batch" in refused["missing batch"][1]

    # a good actor: its episodes are accepted (spooled first), trained, and a reused episode id is refused
    with LearnerClient(client_cfg(port), "good") as c:
        for ep in range(2):
            c.send_rollout(Rollout("good", ep, good_batch(learner, 10 + ep), {"steps": 30}))
            c.send_interaction({"type": "episode", "episode": ep, "return": 1.0, "steps": 30})
        assert c.flush(20) and c.status.refused == 0
    code, details = send(port, rollout_messages(encode_rollout(Rollout("other", 0, good_batch(learner, 10)))))
    assert code == INVALID and "episode id 10 is already used" in details
    deadline = time.monotonic() + 60
    while learner.updates < 1 and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    assert learner.updates >= 1 and thread.is_alive() and not died
    assert learner.service.stats.payloads_refused == len(refused) + 1


def test_an_oversize_upload_is_refused_before_its_end_and_nothing_is_stored(served):
    learner, thread, _ = served
    seen: list[int] = []

    def stream():  # endless: the learner must refuse it once it passes the cap, not wait for END
        yield services_pb2.Transition(transfer_state=TransferState.TRANSFER_BEGIN, data=bytes(2 << 20))
        for i in range(10_000):
            seen.append(i)
            yield services_pb2.Transition(transfer_state=TransferState.TRANSFER_MIDDLE, data=bytes(2 << 20))

    code, details = send(learner.port, stream())  # type: ignore[arg-type]
    assert code == INVALID and str(CAP) in details
    assert len(seen) < 10, "the learner read far past its limit"
    big = encode_rollout(Rollout("big", 0, {**good_batch(learner, 20), "pad": torch.zeros(CAP // 4)}))
    code, details = send(learner.port, rollout_messages(big))
    assert code == INVALID and str(CAP) in details
    assert learner.service.rollouts.empty() and not learner.spool.entries() and thread.is_alive()


def test_a_stream_without_end_is_refused_and_nothing_is_stored(served):
    learner, thread, _ = served
    payload = encode_rollout(Rollout("cut", 0, good_batch(learner, 30)))
    messages = rollout_messages(payload + bytes(3 << 20))[:-1]  # BEGIN, MIDDLE...: the END never comes
    assert messages[0].transfer_state == TransferState.TRANSFER_BEGIN
    code, details = send(learner.port, messages)
    assert code == INVALID and "TRANSFER_END" in details
    code, _ = send(
        learner.port, [services_pb2.Transition(transfer_state=TransferState.TRANSFER_BEGIN, data=b"x")]
    )
    assert code == INVALID
    assert learner.service.rollouts.empty() and not learner.spool.entries()
    assert learner.service.stats.rollouts_received == 0 and thread.is_alive()


def test_one_connection_cannot_hold_more_than_max_streams_per_peer(served):
    learner, _, _ = served
    limit = learner.cfg.transport.max_streams_per_peer
    release = threading.Event()

    def hanging():  # an upload that never ends until released
        yield services_pb2.Transition(transfer_state=TransferState.TRANSFER_BEGIN, data=b"x")
        release.wait(30)

    ch = make_channel(client_cfg(learner.port))
    stub = services_pb2_grpc.LearnerServiceStub(ch)
    try:
        calls = [stub.SendTransitions.future(hanging(), timeout=30) for _ in range(limit)]
        time.sleep(0.5)  # all of them open on the learner
        with pytest.raises(grpc.RpcError) as err:
            stub.Ready(services_pb2.Empty(), timeout=5)
        assert err.value.code() == EXHAUSTED and "max_streams_per_peer" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            next(stub.StreamParameters(services_pb2.Empty(), timeout=5))
        assert err.value.code() == EXHAUSTED
        # every other client is still served
        with LearnerClient(client_cfg(learner.port), "good") as c:
            assert c.wait_for_parameters(10) is not None
            c.send_rollout(Rollout("good", 0, good_batch(learner, 40), {"steps": 30}))
            assert c.flush(20) and c.status.refused == 0
        release.set()
        codes = [f.exception().code() for f in calls]  # ended without END
        assert codes == [INVALID] * limit
        stub.Ready(services_pb2.Empty(), timeout=5)  # the slots are free again
    finally:
        release.set()
        ch.close()


def test_episode_stats_beyond_the_limit_or_not_numbers_are_refused(served):
    learner, _, _ = served
    huge = encode_interaction(
        {"type": "episode", "note": "x" * (learner.cfg.transport.max_interaction_bytes + 1)}
    )
    code, _ = send(learner.port, list(to_messages(huge, services_pb2.InteractionMessage)), "SendInteractions")
    assert code == INVALID
    for bad in (b'{"steps": NaN}', b'{"return": 1e999}', b'{"steps": [1]}', b"[" * 100_000):
        code, _ = send(
            learner.port, list(to_messages(bad, services_pb2.InteractionMessage)), "SendInteractions"
        )
        assert code == INVALID, bad[:20]
    assert learner.service.interactions.empty()
