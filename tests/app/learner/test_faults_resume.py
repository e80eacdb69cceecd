"""Stops and crashes: sends during a stop are refused with UNAVAILABLE and re-sent by the actor; accepted
episodes survive a crash in the spool and are trained exactly once by the resumed learner; versions never
repeat after a rollback to an older checkpoint."""

from __future__ import annotations

import json
import time

import grpc
import torch
from lerobot.transport import services_pb2, services_pb2_grpc

from app.actor.client import LearnerClient
from app.learner.checkpoint import CheckpointManager
from app.learner.loop import PUSHED_VERSION_FILE, SPOOL_DIR, SPOOL_DONE_KEY, Learner
from app.transport.channel import make_channel
from app.transport.codec import Rollout, decode_parameters, encode_rollout, to_messages
from tests.app.learner.test_faults_hostile import client_cfg, good_batch
from tests.app.learner.test_learner import _prime

FAST = ("--learner.save_every=0", "--algorithm.drop_episode_after_versions=100")


def deliver(learner: Learner, episodes: list[int], actor: str = "a") -> None:
    """An actor sends these episodes (episode id 100 + n, 6 chunks each); all acknowledged."""
    with LearnerClient(client_cfg(learner.port), actor) as c:
        for ep in episodes:
            c.send_rollout(Rollout(actor, ep, good_batch(learner, 100 + ep), {"steps": 30}))
        assert c.flush(20) and c.status.refused == 0


def wait_queued(learner: Learner, n: int) -> None:
    deadline = time.monotonic() + 10
    while learner.service.rollouts.qsize() < n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert learner.service.rollouts.qsize() == n


def spooled(learner: Learner) -> list[str]:
    return sorted(p.name for p in (learner.out / SPOOL_DIR).glob("*.rollout"))


def crash(learner: Learner) -> None:
    """kill -9, as far as one process can: no final save, no clean stop, no spool clean-up."""
    learner.server.stop(grace=None).wait()
    learner.shutdown.set()


def test_sends_during_a_stop_are_refused_unavailable_and_the_actor_re_sends(run_config):
    first = Learner(run_config(*FAST), progress=None)
    first.start_server()
    first.service.close()  # what run() does first when it ends (Ctrl-C, SIGTERM, max_updates)
    ch = make_channel(client_cfg(first.port))
    payload = encode_rollout(Rollout("raw", 0, good_batch(first, 1)))
    try:
        stub = services_pb2_grpc.LearnerServiceStub(ch)
        for call, message in (
            (stub.SendTransitions, services_pb2.Transition),
            (stub.SendInteractions, services_pb2.InteractionMessage),
        ):
            try:
                call(
                    iter(
                        list(to_messages(payload if message is services_pb2.Transition else b"{}", message))
                    ),
                    timeout=5,
                )
                raise AssertionError("a send during the stop was acknowledged")
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
    finally:
        ch.close()
    assert first.service.rollouts.empty() and not spooled(first)
    port = first.port
    client = LearnerClient(client_cfg(port), "a").start()
    try:
        client.send_rollout(Rollout("a", 0, good_batch(first, 2), {"steps": 30}))
        time.sleep(1.0)
        assert client.status.pending == 1 and client.status.refused == 0  # kept, retried
        crash(first)
        second = Learner(
            run_config(*FAST, "--learner.resume=false", f"--transport.port={port}"), progress=None
        )
        second.start_server()
        try:
            assert client.flush(20)
            assert second.service.rollouts.get(timeout=5).key == ("a", 0)
        finally:
            crash(second)
    finally:
        client.close()


def test_a_send_blocked_on_a_full_queue_gets_unavailable_when_the_learner_stops(run_config):
    learner = Learner(run_config(*FAST), progress=None)
    learner.service.rollouts.maxsize = 1  # the loop does not drain here: the second send blocks
    learner.start_server()
    try:
        deliver(learner, [0])
        ch = make_channel(client_cfg(learner.port))
        call = services_pb2_grpc.LearnerServiceStub(ch).SendTransitions.future(
            iter(
                list(
                    to_messages(
                        encode_rollout(Rollout("a", 1, good_batch(learner, 101))), services_pb2.Transition
                    )
                )
            ),
            timeout=20,
        )
        time.sleep(0.5)
        assert not call.done()
        learner.service.close()
        assert call.exception(10).code() == grpc.StatusCode.UNAVAILABLE
        ch.close()
        assert len(spooled(learner)) == 2  # stored before the stop: the next learner trains it
    finally:
        crash(learner)


def test_accepted_episodes_survive_a_crash_and_train_exactly_once_and_versions_go_on(run_config):
    first = Learner(run_config(*FAST), progress=None)
    _prime(first)
    first.start_server()
    # update 1 on episodes 0, 1 -> v1, checkpointed
    deliver(first, [0, 1])
    wait_queued(first, 2)
    first._drain(0.1)
    first._update()
    assert len(spooled(first)) == 2  # trained, but no checkpoint holds them yet
    kept = {name: (first.out / SPOOL_DIR / name).read_bytes() for name in spooled(first)}
    ckpt = first._save()
    assert spooled(first) == []
    assert json.loads((ckpt / "meta.json").read_text())[SPOOL_DONE_KEY] == sorted(kept)
    for name, data in kept.items():  # as if killed between the checkpoint's rename and the deletion
        (first.out / SPOOL_DIR / name).write_bytes(data)
    # update 2 on episodes 2, 3 -> v2 pushed, never checkpointed
    deliver(first, [2, 3])
    wait_queued(first, 2)
    first._drain(0.1)
    first._update()
    assert first.algorithm.policy_version == 2
    assert json.loads((first.out / PUSHED_VERSION_FILE).read_text())["highest_pushed"] == 2
    # episode 4 drained (pending), episode 5 only queued: then kill -9
    deliver(first, [4])
    wait_queued(first, 1)
    first._drain(0.1)
    deliver(first, [5])
    wait_queued(first, 1)
    crash(first)
    assert len(spooled(first)) == 2 + 2 + 2  # 0, 1 (checkpointed: listed), 2, 3 (trained: not), 4, 5

    lines: list[str] = []
    resumed = Learner(run_config(*FAST, "--learner.resume=true"), progress=lines.append)
    assert resumed.updates == 1
    assert [r.key for r, _ in resumed.pending] == [("a", 2), ("a", 3), ("a", 4), ("a", 5)]
    assert len(spooled(resumed)) == 4  # those of episodes 0 and 1 were in the checkpoint: deleted
    # versions: the checkpoint holds v1, v2 was pushed before the crash: the resumed weights are v3
    assert resumed.algorithm.policy_version == 3
    assert any("the weights start as v3" in line for line in lines)
    _prime(resumed)
    resumed.start_server()
    version, payload = resumed.service.published_payload()
    assert version == 3 == decode_parameters(payload).version
    # the actor re-sends episode 4 (its OK was lost) and one that was trained before the crash: duplicates
    deliver(resumed, [4, 0])
    assert resumed.service.stats.duplicates_dropped == 2 and resumed.service.rollouts.empty()
    resumed._update()
    metrics = json.loads((resumed.out / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["rl/chunks"] == 4 * 6  # episodes 2..5, each once
    assert resumed.algorithm.policy_version == 4
    resumed._save()
    assert spooled(resumed) == []
    crash(resumed)

    again = Learner(run_config(*FAST, "--learner.resume=true"), progress=None)
    assert again.pending == [] and again.algorithm.policy_version == 4
    # re-sends of episodes trained before the last checkpoint are still recognised, their ids still taken
    assert ["a", 3, [103]] in again.service.dedup_state() and ["a", 5, [105]] in again.service.dedup_state()
    assert "episode id 105 is already used" in again.service.register(Rollout("b", 0, good_batch(again, 105)))


def test_a_spooled_rollout_the_policy_cannot_train_is_set_aside_not_trained(run_config):
    first = Learner(run_config(*FAST), progress=None)
    first.start_server()
    deliver(first, [0])
    crash(first)
    (name,) = spooled(first)
    bad = good_batch(first, 7)
    bad["obs.observation.state"] = torch.zeros(6, 3)  # e.g. the config changed between the runs
    (first.out / SPOOL_DIR / name).write_bytes(encode_rollout(Rollout("a", 0, bad)))
    first._save()  # a checkpoint to resume from (it lists nothing as done)
    resumed = Learner(run_config(*FAST, "--learner.resume=true"), progress=None)
    assert resumed.pending == [] and spooled(resumed) == []
    assert (resumed.out / SPOOL_DIR / f"{name}.rejected").is_file()


def test_a_restart_without_checkpoint_still_continues_above_the_pushed_versions(run_config):
    first = Learner(run_config(*FAST), progress=None)
    _prime(first)
    first.start_server()  # pushes v0: recorded before the push
    assert json.loads((first.out / PUSHED_VERSION_FILE).read_text()) == {"highest_pushed": 0}
    deliver(first, [0, 1])
    wait_queued(first, 2)
    first._drain(0.1)
    first._update()  # v1 pushed, then killed before any checkpoint
    crash(first)
    assert CheckpointManager(first.out / "checkpoints").latest() is None
    second = Learner(run_config(*FAST), progress=None)  # nothing to resume: a fresh start, same folder
    assert second.algorithm.policy_version == 2  # v1 reached actors with weights that are gone
    # acknowledged before the crash, and no surviving weights hold their update: trained here
    assert [r.key for r, _ in second.pending] == [("a", 0), ("a", 1)]
