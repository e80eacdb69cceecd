"""A damaged checkpoint never ends a resume in a traceback: the learner skips it with one warning line
naming the file and why, and resumes from the newest intact one; a pickled state.pt is never unpickled;
with none intact it is one line (exit 2) naming the folder and what to do."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from app.learner.checkpoint import META_FILE, STATE_FILE, CheckpointManager, NoIntactCheckpointError
from app.learner.loop import Learner
from tests.app.conftest import tiny_run_config
from tests.app.learner.test_learner import _prime, _rollout

MARKER = Path("/tmp/pirl-test-checkpoint-unpickled")


class _Evil:
    """Unpickling this runs code (it would create MARKER): a weights-only load must refuse it unread."""

    def __reduce__(self):
        return (MARKER.touch, ())


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory) -> Path:
    """A run folder with checkpoints v1 and v2 (v2 newest, named by LAST)."""
    root = tmp_path_factory.mktemp("src")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(Path(__file__).resolve().parents[3])
        learner = Learner(tiny_run_config(root), progress=None)
        _prime(learner)
        for v in (0, 1):
            learner.pending = [_rollout(learner, 2 * v, v), _rollout(learner, 2 * v + 1, v)]
            learner._update()
            learner._save()
    return root / "run"


def _truncate(p: Path) -> None:
    data = (p / STATE_FILE).read_bytes()
    (p / STATE_FILE).write_bytes(data[: len(data) // 2])


def _pickled(p: Path) -> None:
    state = torch.load(p / STATE_FILE, weights_only=True)
    state["algorithm"]["evil"] = _Evil()
    torch.save(state, p / STATE_FILE)


def _wrong_digest(p: Path) -> None:
    state = torch.load(p / STATE_FILE, weights_only=True)
    t = next(iter(state["trainable"].values()))
    t.view(-1)[0] += 1.0
    torch.save(state, p / STATE_FILE)


def _meta_without(key: str):
    def edit(p: Path) -> None:
        meta = json.loads((p / META_FILE).read_text())
        del meta[key]
        (p / META_FILE).write_text(json.dumps(meta))

    return edit


# (kind, how the newest checkpoint is damaged, the file named, words of the reason)
DAMAGE = [
    ("truncated", _truncate, STATE_FILE, "truncated or not a torch checkpoint"),
    ("empty", lambda p: (p / STATE_FILE).write_bytes(b""), STATE_FILE, "is empty"),
    ("garbage", lambda p: (p / STATE_FILE).write_bytes(bytes(range(256)) * 40), STATE_FILE, "not a torch"),
    ("pickled", _pickled, STATE_FILE, "pickled objects"),
    ("state missing", lambda p: (p / STATE_FILE).unlink(), STATE_FILE, "is missing"),
    ("wrong digest", _wrong_digest, STATE_FILE, "weights digest"),
    ("meta key missing", _meta_without("updates"), META_FILE, "no updates"),
    ("digest key missing", _meta_without("weights_digest"), META_FILE, "no weights_digest"),
    ("meta not JSON", lambda p: (p / META_FILE).write_text("{'upd"), META_FILE, "is not JSON"),
    ("meta missing", lambda p: (p / META_FILE).unlink(), META_FILE, "is missing"),
]


@pytest.fixture
def run_dir(two_checkpoints, tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    shutil.copytree(two_checkpoints, tmp_path / "run")
    return tmp_path / "run"


def _resume(tmp_path: Path) -> tuple[Learner, list[str]]:
    lines: list[str] = []
    learner = Learner(tiny_run_config(tmp_path, "--learner.resume=true"), progress=lines.append)
    return learner, lines


@pytest.mark.parametrize(("kind", "damage", "file", "reason"), DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_newest_checkpoint_is_skipped_with_one_warning(
    run_dir, tmp_path, caplog, kind, damage, file, reason
):
    newest = run_dir / "checkpoints" / "000002"
    MARKER.unlink(missing_ok=True)
    damage(newest)
    with caplog.at_level(logging.WARNING, logger="pirl.learner.checkpoint"):
        learner, lines = _resume(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    skipped = [w for w in warnings if w.startswith("skipped checkpoint 000002")]
    assert len(skipped) == 1, warnings
    assert str(newest / file) in skipped[0] and reason in skipped[0] and "\n" not in skipped[0]
    assert learner.updates == 1 and learner.algorithm.policy_version >= 1
    assert any("resumed" in line and "000001" in line for line in lines)
    assert not MARKER.exists()  # the pickle was refused unread


def test_last_naming_a_missing_folder_warns_and_resumes_the_newest(run_dir, tmp_path, caplog):
    (run_dir / "checkpoints" / "LAST").write_text("000009\n")
    with caplog.at_level(logging.WARNING, logger="pirl.learner.checkpoint"):
        learner, _ = _resume(tmp_path)
    assert any("LAST names '000009', which is missing" in r.getMessage() for r in caplog.records)
    assert learner.updates == 2


def test_versions_are_tried_newest_first_by_number(run_dir, tmp_path):
    ckpts = run_dir / "checkpoints"
    shutil.copytree(ckpts / "000002", ckpts / "000010")  # 10 > 2 although LAST says 000002
    meta = json.loads((ckpts / "000010" / META_FILE).read_text())
    (ckpts / "000010" / META_FILE).write_text(json.dumps({**meta, "updates": 7}))
    assert [p.name for p in CheckpointManager(ckpts).candidates()] == ["000010", "000002", "000001"]
    learner, _ = _resume(tmp_path)
    assert learner.updates == 7


def test_no_intact_checkpoint_is_one_line_naming_the_folder(run_dir, tmp_path):
    for p in (run_dir / "checkpoints").glob("0*"):
        (p / STATE_FILE).write_bytes(b"garbage")
    with pytest.raises(NoIntactCheckpointError) as err:
        _resume(tmp_path)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    assert f"no intact checkpoint in {run_dir / 'checkpoints'}" in msg and "2 tried" in msg
    assert "move the damaged folders away" in msg


def test_the_learner_command_exits_2_with_one_line_when_none_is_intact(run_dir, tmp_path, capsys):
    from app.learner.cli import main

    for p in (run_dir / "checkpoints").glob("0*"):
        (p / META_FILE).unlink()
    argv = [
        "--config", "configs/sim_pirl_reach.json", "--policy.native.obs_hidden=32",
        "--policy.native.expert_hidden=32", "--policy.native.time_embed_dim=8", "--policy.rl.value_hidden=[32]",
        "--policy.rl.noise.hidden=[16]", f"--learner.output_dir={run_dir}", "--learner.resume=true",
        "--learner.tensorboard=false",
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("pirl learner: no intact checkpoint in") and "meta.json is missing" in last


def test_what_a_kill_leaves_behind_is_cleared_by_the_next_save(tmp_path):
    """A kill inside a prune (once: a half-deleted numbered folder) or a LAST write (its temporary file)
    leaves litter; the next save removes it, and pruning goes through a temporary name."""
    mgr = CheckpointManager(tmp_path, keep=2)
    state = {"trainable": {"w": torch.ones(2)}}
    for v in (1, 2, 3):
        mgr.save(v, state, {})
    (tmp_path / "000000").mkdir()  # half-deleted by a prune that was killed: no meta.json
    (tmp_path / ".LAST.tmp-4242").write_text("000003\n")
    (tmp_path / ".tmp-pruned-000001-4242").mkdir()  # a prune killed after its rename
    mgr.save(4, state, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000003", "000004", "LAST"]
