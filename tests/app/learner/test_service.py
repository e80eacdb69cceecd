"""LearnerService + LearnerClient over real gRPC on loopback (in one process, real sockets)."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import threading
import time

import grpc
import pytest
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from app.actor.client import LearnerClient
from app.learner.service import PIRLLearnerService
from app.transport.channel import make_channel, make_server
from app.transport.chunks import chunk_spans, parse_parameters_frame
from app.transport.codec import (
    Parameters,
    Rollout,
    decode_parameters,
    encode_parameters,
    encode_rollout,
    to_messages,
)
from app.transport.config import TransportConfig


def fast_cfg(**kw) -> TransportConfig:
    base = dict(port=0, ready_timeout_s=1.0, send_timeout_s=3.0, backoff_initial_s=0.05, backoff_max_s=0.3)
    base.update(kw)
    return TransportConfig(**base)


class Learner:
    """A served PIRLLearnerService on a free (or given) port."""

    def __init__(self, cfg: TransportConfig, **service_kw):
        self.shutdown = threading.Event()
        self.service = PIRLLearnerService(self.shutdown, **service_kw)
        self.server, self.port = make_server(cfg)
        self.service.add_to_server(self.server)
        self.server.start()

    def stop(self):
        self.shutdown.set()
        self.server.stop(grace=0.5).wait()


def client_cfg(learner: Learner, **kw) -> TransportConfig:
    return fast_cfg(port=learner.port, **kw)


def wait_until(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def publish(learner: Learner, version: int, value: float = 0.0, n: int = 4):
    p = Parameters(version=version, state={"w": torch.full((n,), value)}, run_id="t")
    learner.service.publish_weights(p)


class _Context:
    """The little of a gRPC servicer context that StreamParameters reads."""

    def is_active(self) -> bool:
        return True

    def invocation_metadata(self):
        return ()

    def peer(self) -> str:
        return "test"


@pytest.fixture
def learner():
    lrn = Learner(fast_cfg())
    yield lrn
    lrn.stop()


def test_parameters_are_broadcast_to_every_actor_and_new_streams_get_current_weights(learner):
    publish(learner, 0, 1.0)
    with LearnerClient(client_cfg(learner), "a") as a, LearnerClient(client_cfg(learner), "b") as b:
        for c in (a, b):
            assert c.wait_for_parameters(10).version == 0
        publish(learner, 1, 2.0)
        wait_until(lambda: a.latest_parameters(0) is not None and b.latest_parameters(0) is not None)
        assert torch.equal(a.latest_parameters().state["w"], torch.full((4,), 2.0))
        assert b.latest_parameters(newer_than=1) is None  # nothing newer than what it has
    assert set(learner.service.stats.actors_seen) >= {"a", "b"}


def test_release_drops_the_clients_copy_and_keeps_a_newer_push(learner):
    """Between pushes the client holds one staging buffer (reused by the next push) and no tensors."""
    import gc
    import weakref

    publish(learner, 0, 1.0)
    with LearnerClient(client_cfg(learner), "a") as c:
        params = c.wait_for_parameters(10)
        assert params.version == 0
        held = weakref.ref(params.state["w"])
        where = params.state["w"].data_ptr()
        c.release(0)
        assert c.latest_parameters() is None  # nothing to load until the next push
        del params
        gc.collect()
        assert held() is None, "the client (or its receive thread) still holds the released weights"
        assert c._staging.buffers_held == 1  # the staging buffer, kept for the next push
        publish(learner, 1, 2.0)
        wait_until(lambda: c.latest_parameters(0) is not None, what="the next push")
        c.release(0)  # an older version: the newer push is kept
        newer = c.latest_parameters()
        assert torch.equal(newer.state["w"], torch.full((4,), 2.0))
        assert newer.state["w"].data_ptr() == where  # received into the released buffer


BIG = 1_500_000  # 6 MB of fp32: a push of several 2 MB chunks


def test_a_held_push_is_not_overwritten_while_newer_ones_arrive(learner):
    publish(learner, 0, 1.0, n=BIG)
    with LearnerClient(client_cfg(learner), "a") as c:
        held = c.wait_for_parameters(10)  # the robot loop is copying v0
        for version in (1, 2):  # two pushes arrive meanwhile
            publish(learner, version, float(version + 1), n=BIG)
            wait_until(lambda v=version: c.latest_parameters(v - 1) is not None, what=f"v{version}")
        assert torch.equal(held.state["w"], torch.full((BIG,), 1.0)), "a lent buffer was rewritten"
        newest = c.latest_parameters()
        assert newest.version == 2 and torch.equal(newest.state["w"], torch.full((BIG,), 3.0))
        where = held.state["w"].data_ptr()
        c.release(0)
        c.release(1)
        c.release(2)
        del held, newest
        publish(learner, 3, 4.0, n=BIG)
        wait_until(lambda: c.latest_parameters(2) is not None, what="v3")
        got = c.latest_parameters()
        assert torch.equal(got.state["w"], torch.full((BIG,), 4.0))
        assert got.state["w"].data_ptr() == where  # v0's buffer, reused once released


def test_the_learner_rewrites_its_payload_in_place_unless_a_stream_still_sends_it(learner):
    service = learner.service
    weights = {"w": torch.zeros(BIG)}

    def push(version: int, value: float) -> None:
        weights["w"].fill_(value)
        service.publish_weights(Parameters(version, weights), bf16=True)

    push(0, 1.0)
    first = service._params.buffer
    push(1, 2.0)  # no stream reads v0: rewritten in place
    assert service._params.buffer is first and len(service._buffers) == 1
    n_frames = len(list(chunk_spans(len(service._params.payload))))
    stream = service.StreamParameters(services_pb2.Empty(), _Context())
    frames = [next(stream)]  # a stream has started sending v1 ...
    push(2, 3.0)  # ... so v2 goes to a second buffer
    assert service._params.buffer is not first and first.refs == 1
    frames += list(itertools.islice(stream, n_frames - 1))  # the rest of v1, unchanged
    v1 = decode_parameters(b"".join(bytes(parse_parameters_frame(f)[1]) for f in frames))
    assert v1.version == 1 and torch.equal(v1.state["w"], torch.full((BIG,), 2.0, dtype=torch.bfloat16))
    stream.close()  # the caller went away
    assert first.refs == 0
    push(3, 4.0)
    assert service._params.buffer is first and len(service._buffers) == 2  # the free one is reused


def test_a_stock_lerobot_client_reads_our_parameter_stream(learner):
    from lerobot.transport.utils import receive_bytes_in_chunks

    p = Parameters(7, {"w": torch.randn(BIG), "step": torch.tensor(3)}, run_id="r")
    learner.service.publish_weights(p, bf16=True)
    ch = make_channel(client_cfg(learner))
    stream = services_pb2_grpc.LearnerServiceStub(ch).StreamParameters(services_pb2.Empty())
    try:
        payload = receive_bytes_in_chunks(stream, None, threading.Event())  # LeRobot's own receiver
    finally:
        stream.cancel()
        ch.close()
    assert payload == encode_parameters(p, bf16=True)


def test_an_older_pirls_torch_save_push_is_refused_with_a_clear_error(learner):
    from lerobot.transport.utils import state_to_bytes

    learner.service.publish_parameters(0, state_to_bytes({"w": torch.zeros(4)}))
    with LearnerClient(client_cfg(learner), "a") as c:
        wait_until(lambda: "torch.save" in c.status.last_error, what="the refusal")
        assert c.latest_parameters() is None and "same pirl version" in c.status.last_error


def test_rollouts_and_interactions_arrive_in_order_and_duplicates_are_dropped(learner):
    with LearnerClient(client_cfg(learner), "a") as c:
        for ep in range(3):
            c.send_rollout(Rollout("a", ep, {"x": torch.full((2,), float(ep))}))
            c.send_interaction({"episode": ep, "success": ep == 2})
        c.send_rollout(Rollout("a", 1, {"x": torch.zeros(2)}))  # a retry of an episode already delivered
        assert c.flush(10)
    got = [learner.service.rollouts.get_nowait().episode for _ in range(3)]
    assert got == [0, 1, 2] and learner.service.rollouts.empty()
    assert learner.service.stats.duplicates_dropped == 1
    assert [learner.service.interactions.get_nowait()["episode"] for _ in range(3)] == [0, 1, 2]


def test_a_big_rollout_crosses_several_chunks(learner):
    big = torch.randn(3, 1024, 1024)  # 12 MB: six 2 MB LeRobot chunks
    with LearnerClient(client_cfg(learner), "a") as c:
        c.send_rollout(Rollout("a", 0, {"x": big}))
        assert c.flush(20)
    assert torch.equal(learner.service.rollouts.get_nowait().batch["x"], big)


def test_a_garbage_payload_is_refused_not_retried(learner):
    with LearnerClient(client_cfg(learner), "a") as c:
        c._enqueue("rollout", b"definitely not torch")
        assert c.flush(10)
        assert c.status.refused == 1 and c.status.sent == 0
    assert learner.service.stats.payloads_refused == 1


def test_ready_has_a_deadline_against_a_silent_peer():
    """A TCP peer that accepts but never answers (a wedged learner) must not hang the actor."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    port = sock.getsockname()[1]
    try:
        ch = make_channel(fast_cfg(port=port, ready_timeout_s=0.5))
        stub = services_pb2_grpc.LearnerServiceStub(ch)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.Ready(services_pb2.Empty(), timeout=0.5)
        assert err.value.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)
        assert time.monotonic() - t0 < 3
        ch.close()
    finally:
        sock.close()


def test_client_survives_a_learner_restart_on_the_same_port():
    first = Learner(fast_cfg())
    port = first.port
    publish(first, 0)
    client = LearnerClient(fast_cfg(port=port), "a").start()
    try:
        assert client.wait_for_parameters(10).version == 0
        first.server.stop(grace=None).wait()  # the learner dies
        first.shutdown.set()
        client.send_rollout(Rollout("a", 0, {"x": torch.ones(1)}))  # produced while it is down
        wait_until(lambda: not client.status.connected, what="client noticing the loss")
        second = Learner(fast_cfg(port=port))
        try:
            publish(second, 5, 3.0)
            wait_until(lambda: client.latest_parameters(0) is not None, what="weights of the new learner")
            assert client.latest_parameters().version == 5
            assert client.flush(10)
            assert second.service.rollouts.get(timeout=1).episode == 0  # delivered after the restart
            assert client.status.reconnects >= 1
        finally:
            second.stop()
    finally:
        client.close()


def test_more_actors_than_lerobots_three_threads_are_served(learner):
    publish(learner, 0)
    clients = [LearnerClient(client_cfg(learner), f"a{i}").start() for i in range(5)]
    try:
        for c in clients:
            assert c.wait_for_parameters(10) is not None
            c.send_rollout(Rollout(c.actor_id, 0, {"x": torch.ones(1)}))
        for c in clients:
            assert c.flush(10)
        assert learner.service.rollouts.qsize() == 5
    finally:
        for c in clients:
            c.close()


def test_token_auth_refuses_wrong_token_and_accepts_right_one():
    lrn = Learner(fast_cfg(token="s3cret"))
    try:
        publish(lrn, 0)
        with LearnerClient(fast_cfg(port=lrn.port, token="wrong"), "bad") as bad:
            time.sleep(0.5)
            assert bad.latest_parameters() is None
            assert "UNAUTHENTICATED" in bad.status.last_error
        ch = make_channel(fast_cfg(port=lrn.port))  # no token at all
        with pytest.raises(grpc.RpcError) as err:
            services_pb2_grpc.LearnerServiceStub(ch).Ready(services_pb2.Empty(), timeout=2)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ch.close()
        with LearnerClient(fast_cfg(port=lrn.port, token="s3cret"), "good") as good:
            assert good.wait_for_parameters(10).version == 0
    finally:
        lrn.stop()


@pytest.mark.skipif(
    shutil.which("openssl") is None, reason="needs the openssl CLI to make a test certificate"
)
def test_tls_channel(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    lrn = Learner(fast_cfg(tls_cert=cert, tls_key=key))
    try:
        publish(lrn, 0)
        cfg = fast_cfg(port=lrn.port, tls_ca=cert, tls_server_name="localhost")
        with LearnerClient(cfg, "tls") as c:
            assert c.wait_for_parameters(10).version == 0
        with LearnerClient(fast_cfg(port=lrn.port), "plain") as plain:  # plaintext to a TLS learner fails
            time.sleep(0.5)
            assert plain.latest_parameters() is None
    finally:
        lrn.stop()


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="together"):
        TransportConfig(tls_cert=tmp_path / "c.pem").validate()
    with pytest.raises(ValueError, match="2 MB"):
        TransportConfig(max_message_bytes=1024).validate()
    with pytest.raises(ValueError, match="PIRL_NO_SUCH_VAR"):
        TransportConfig(token_env="PIRL_NO_SUCH_VAR").resolved_token()


def test_sends_during_shutdown_get_unavailable_and_are_not_dropped():
    """A send the learner cannot take because it stops is UNAVAILABLE (the actor keeps it and re-sends),
    never an OK for a payload that is then dropped; a blocked one is forgotten, so the re-send counts."""
    lrn = Learner(fast_cfg(), max_pending_rollouts=1)
    try:
        with LearnerClient(client_cfg(lrn), "a") as c:
            c.send_rollout(Rollout("a", 0, {"x": torch.ones(1)}))
            assert c.flush(10)
        ch = make_channel(client_cfg(lrn))
        stub = services_pb2_grpc.LearnerServiceStub(ch)
        blocked = stub.SendTransitions.future(
            to_messages(encode_rollout(Rollout("a", 1, {"x": torch.ones(1)})), services_pb2.Transition),
            timeout=60,
        )
        # generous: on a loaded machine the call can take seconds to reach the service (the wait ends as
        # soon as it does)
        wait_until(lambda: lrn.service._seen.get(("a", 1)) is not None, timeout=60, what="the blocked send")
        lrn.service.close()
        assert blocked.exception(10).code() == grpc.StatusCode.UNAVAILABLE
        assert ("a", 1) not in lrn.service._seen  # not stored: its re-send will be accepted
        for call, message, payload in (
            (
                stub.SendTransitions,
                services_pb2.Transition,
                encode_rollout(Rollout("a", 2, {"x": torch.ones(1)})),
            ),
            (stub.SendInteractions, services_pb2.InteractionMessage, b"{}"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call(to_messages(payload, message), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        ch.close()
        assert lrn.service.rollouts.qsize() == 1 and lrn.service.stats.sends_refused_stopping == 3
    finally:
        lrn.stop()


def test_the_client_keeps_and_re_sends_what_a_stopping_learner_refused():
    lrn = Learner(fast_cfg())
    lrn.service.close()
    client = LearnerClient(client_cfg(lrn), "a").start()
    try:
        client.send_rollout(Rollout("a", 0, {"x": torch.ones(1)}))
        wait_until(lambda: lrn.service.stats.sends_refused_stopping >= 2, what="retries")
        assert client.status.pending == 1 and client.status.refused == 0 and client.status.sent == 0
        lrn.service._closing.clear()  # the learner serves again (in real life: the next learner process)
        assert client.flush(10) and lrn.service.rollouts.get_nowait().key == ("a", 0)
    finally:
        client.close()
        lrn.stop()
