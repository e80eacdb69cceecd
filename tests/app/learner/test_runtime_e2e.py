"""PI-RL learner + actors as real processes over real gRPC on loopback, with the simulated SO-101.

Slow (process start-up dominates): marked `slow`, still run in CI. Sizes are tiny: 1 s episodes of
6 chunks, 24-chunk updates, a 32-wide native policy.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from app.learner.checkpoint import META_FILE, CheckpointManager
from app.run.launch import RunProcesses, read_endpoint

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    cfg = json.loads((REPO / "configs" / "sim_pirl_reach.json").read_text())
    cfg["policy"]["native"].update({"obs_hidden": 32, "expert_hidden": 32, "time_embed_dim": 8})
    cfg["policy"]["value_hidden"] = [32]
    cfg["policy"]["rl"]["value_hidden"] = [32]
    cfg["policy"]["rl"]["noise"] = {"hidden": [16]}
    cfg["policy"]["rl"]["ppo"] = {"epochs": 1, "minibatch_size": 32}
    cfg["algorithm"]["chunks_per_update"] = 24
    cfg["episode"]["time_limit_s"] = 1.0
    cfg["learner"].update({"save_every": 1, "keep_checkpoints": 1000, "tensorboard": False})
    cfg["transport"].update({"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "keepalive_s": 2.0})
    cfg.pop("value_hidden", None)
    cfg["policy"].pop("value_hidden", None)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _update_no(line: str) -> int | None:
    m = re.match(r"learner: update (\d+) v(\d+)", line)
    return int(m.group(1)) if m else None


def test_two_actors_train_with_a_learner_that_is_killed_and_resumed(tiny_config, tmp_path):
    """One scenario (process start-up is the cost, so it is shared):

    1. a learner and two actors exchange transitions; the learner updates and every actor moves to newer
       weights (cleanrl metrics written, both actors counted);
    2. the learner is SIGKILLed: the actors notice, hold and stay alive;
    3. a learner restarted with --learner.resume=true continues from the checkpoint (version, counters);
       the old actors reconnect and training goes on;
    4. a fresh actor's very first chunk uses the resumed (or newer) weights, never a fresh init.
    """
    out = tmp_path / "run"
    run = RunProcesses.start(tiny_config, out, actors=2, env={"OMP_NUM_THREADS": "1"})
    try:
        # 1. exchange, updates, weights reaching both actors
        run.wait_for(lambda n, ln: (_update_no(ln) or 0) >= 2, timeout=150, what="2 learner updates")
        for actor in ("actor0", "actor1"):
            run.wait_for(
                lambda n, ln, a=actor: n == a and re.search(r" v[1-9]\d* ", ln) is not None,
                timeout=60,
                what=f"{actor} on weights newer than v0",
            )
            assert re.search(
                r"first chunk with policy v\d+ \(weights", "\n".join(run.actors[int(actor[-1])].history)
            )
        run.wait_for(
            lambda n, ln: "checkpoint" in ln and "(v2," in ln, timeout=30, what="checkpoint v2", seen=True
        )
        metrics = run.metrics()
        for key in (
            "losses/approx_kl",
            "losses/clipfrac",
            "losses/value_loss",
            "charts/SPS",
            "charts/success_rate",
        ):
            assert key in metrics[-1], key
        assert metrics[-1]["charts/SPS"] > 0
        assert [m["charts/policy_version"] for m in metrics[:2]] == [1.0, 2.0]
        # both actors fed this learner: counted in the metrics of the first update after both sent episodes
        # (actor0 alone may fill updates 1 and 2 while actor1 still starts up)
        deadline = time.monotonic() + 60
        while max(m["charts/actors"] for m in metrics) < 2.0 and time.monotonic() < deadline:
            time.sleep(0.5)
            metrics = run.metrics()
        assert max(m["charts/actors"] for m in metrics) == 2.0
        assert read_endpoint(out)["port"] == run.port

        # 2. kill -9 the learner: the actors must notice and keep the robot (and themselves) alive
        os.kill(run.learner.popen.pid, signal.SIGKILL)
        run.learner.wait(10)
        run.wait_for(lambda n, ln: n.startswith("actor") and "link down" in ln, timeout=40, what="link loss")
        assert all(a.alive for a in run.actors)

        # 3. resume on the same port
        # the newest finished checkpoint is what a resume takes (a kill between a save's meta.json and its
        # LAST pointer leaves LAST one behind: latest() would name the older one)
        _, meta = CheckpointManager.load(CheckpointManager(out / "checkpoints").finished()[-1])
        run.start_learner(["--learner.resume=true"])
        _, line = run.wait_for(lambda n, ln: "learner: resumed" in ln, timeout=60, what="resume line")
        v = meta["policy_version"]
        assert f"policy v{v} updates {meta['updates']}" in line

        # 4. a fresh actor acts first with checkpointed weights of the resumed run
        late = run.start_actor(["--actor.actor_id=late"])
        _, first = run.wait_for(
            lambda n, ln: n == late.name and "first chunk" in ln, timeout=60, what="first chunk"
        )
        m = re.search(r"policy v(\d+) \(weights ([0-9a-f]+)\)", first)
        fv, fdigest = int(m.group(1)), m.group(2)
        assert fv >= v  # versions go on from the checkpoint's; a fresh init would be v0
        if fv == v or (out / "checkpoints" / f"{fv:06d}" / META_FILE).is_file():
            _, fmeta = CheckpointManager.load(out / "checkpoints" / f"{fv:06d}")
            assert fdigest == fmeta["weights_digest"]
        # else: the resumed learner had already trained past v (fast actors) and not saved that version

        # ... and training continues past the resumed counters, fed by the reconnected actors
        run.wait_for(
            lambda n, ln: (_update_no(ln) or 0) >= meta["updates"] + 2,
            timeout=150,
            what="updates after resume",
        )
        assert all(a.alive for a in run.actors)
    finally:
        run.stop()
    assert run.learner.popen.returncode == 0, run.tail()
    last = CheckpointManager(out / "checkpoints").latest()
    assert CheckpointManager.load(last)[1]["updates"] >= meta["updates"] + 2  # final save on SIGINT
