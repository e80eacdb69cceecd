"""Fault campaign (benchmarks/faults.py): its pieces on their own (fast), and a very small campaign with real
processes (slow: one learner kill inside a save, the accounting, one damaged checkpoint)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import torch

from app.learner.checkpoint import CheckpointManager, DamagedCheckpointError, check_learner_checkpoint
from app.rl.digests import weights_digest
from app.transport.codec import Rollout, encode_rollout
from benchmarks import faults


def test_quick_is_a_bounded_subset_and_bad_counts_are_refused(capsys):
    args = faults.parse_args(["--quick"])
    assert (args.learner_kills, args.actor_kills, args.link_losses) == (1, 1, 1) and args.max_s <= 150
    assert set(args.damage.split(",")) <= {*faults.DAMAGE, "all"}
    with pytest.raises(SystemExit):
        faults.parse_args(["--learner_kills", "-1"])
    assert "counts must be >= 0" in capsys.readouterr().err


def test_the_black_hole_proxy_forwards_then_holds_silently_then_forwards_again():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo():
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    proxy = faults.BlackHoleProxy(port)
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as s:
            s.sendall(b"ping")
            assert s.recv(16) == b"ping"
            proxy.freeze()
            s.sendall(b"lost?")  # accepted by the kernel, never answered: a black hole
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):
                s.recv(16)
            proxy.thaw()
            s.settimeout(2)
            assert s.recv(16) == b"lost?"
    finally:
        proxy.close()
        server.close()


def test_the_spool_watch_keeps_every_accepted_rollout_even_once_deleted(tmp_path):
    spool = tmp_path / "spool"
    watch = faults.SpoolWatch(spool, tmp_path / "accepted")
    try:
        for ep in range(3):
            batch = {"reward": torch.zeros(4 + ep), "episode_id": torch.full((4 + ep,), 100 + ep)}
            tmp = spool / f".{ep:012d}.rollout.tmp"
            tmp.write_bytes(encode_rollout(Rollout("a-1", ep, batch, {})))
            tmp.rename(spool / f"{ep:012d}.rollout")  # as the spool writes them
            if ep == 0:
                time.sleep(0.05)
                (spool / "000000000000.rollout").unlink()  # trained and checkpointed: gone, still counted
    finally:
        watch.stop()
    assert watch.accepted == {("a-1", 0): 4, ("a-1", 1): 5, ("a-1", 2): 6}


@pytest.mark.parametrize("kind", sorted(faults.DAMAGE))
def test_each_damage_kind_makes_the_checkpoint_unusable(tmp_path, kind):
    mgr = CheckpointManager(tmp_path / "checkpoints")
    w = {"a": torch.ones(3)}
    meta = {"updates": 1, "env_steps": 2, "episodes": 3, "run_id": "r", "weights_digest": weights_digest(w)}
    for v in (1, 2):
        mgr.save(v, {"trainable": w, "algorithm": {}, "generator": torch.zeros(4, dtype=torch.uint8)}, meta)
    check_learner_checkpoint(mgr.latest())  # intact
    newest = mgr.latest()
    faults.DAMAGE[kind](newest)
    if kind == "LAST missing":
        assert not newest.exists() and mgr.candidates()[0].name == "000001"
        return
    with pytest.raises(DamagedCheckpointError):
        check_learner_checkpoint(newest)


@pytest.mark.timing  # holds measured against timeouts: run alone
@pytest.mark.slow
def test_a_tiny_campaign_kills_the_learner_in_a_save_and_loses_nothing(tmp_path):
    out = tmp_path / "faults.json"
    rc = faults.main(
        ["--learner_kills", "1", "--actor_kills", "0", "--link_losses", "0", "--skip", "config,hostile",
         "--damage", "wrong digest", "--max_s", "600", "--out", str(out), "--workdir", str(tmp_path / "w")]
    )  # fmt: skip
    result = json.loads(out.read_text())
    checks = result["checks"]
    assert rc == 0 and not result["skipped"], result
    assert checks["learner_kill"]["tries"] == checks["learner_kill"]["passes"] == 1
    assert checks["accounting"]["passes"] == 1 and checks["accounting"]["values"]["accepted_chunks"][0] > 0
    assert checks["damaged_checkpoint"]["passes"] == 1
    assert "| learner_kill" in result["table"]
