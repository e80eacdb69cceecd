"""Hub ids wherever a policy is named (app/rl/hub.py) and the learner's push (app/learner/hub.py), offline:
a fake Hugging Face cache in tmp_path (models--owner--name/snapshots/<hash>/ + refs/main) with
HF_HUB_CACHE pointing at it, HF_HUB_OFFLINE=1, and a recording stand-in for the hub API."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.rl.hub import HubError, resolve_folder, split_repo_id
from tests.app.eval.conftest import save_policy

REPO_ID = "pirl-test/reach_policy"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, write, commit: str = COMMIT) -> Path:
    """Lay out `repo_id` in a hub cache as snapshot_download leaves it; `write(folder)` fills the snapshot."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    write(snapshot)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    return cache


@pytest.fixture
def cached_policy(hub_cache) -> Path:
    """A small pirl_flow policy (sim reach: 9 state values, 6 actions) cached as REPO_ID."""
    return cache_repo(hub_cache, REPO_ID, lambda d: save_policy(d))


def test_repo_id_shapes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    assert split_repo_id("lerobot/smolvla_base") == ("lerobot/smolvla_base", None)
    assert split_repo_id("me/pirl-reach.v2@v1.0") == ("me/pirl-reach.v2", "v1.0")
    for local in ("outputs/bc_polcy", "./a/b", "/abs/x", "a/b/c", "~/x", "a/../b", "plain", "a--b/c"):
        assert split_repo_id(local) is None, local  # outputs/ exists here: a mistyped local path
    assert resolve_folder("outputs/bc_polcy") == Path("outputs/bc_polcy")  # the caller says "no such folder"
    assert resolve_folder(tmp_path / "outputs") == tmp_path / "outputs"  # an existing path, as it is


def test_a_cached_repo_resolves_offline_by_branch_and_commit(cached_policy):
    assert resolve_folder(REPO_ID) == cached_policy
    assert resolve_folder(f"{REPO_ID}@main") == cached_policy
    assert resolve_folder(f"{REPO_ID}@{COMMIT}") == cached_policy


def test_a_missing_repo_is_one_line_saying_what_to_do(hub_cache):
    with pytest.raises(HubError) as err:
        resolve_folder("pirl-test/missing")
    assert str(err.value) == (
        "pirl-test/missing is not in the Hugging Face cache and the hub is unreachable (offline): download it "
        "once with `huggingface-cli download pirl-test/missing` on a machine with network, or pass a local "
        "folder"
    )
    with pytest.raises(HubError, match=r"pirl-test/missing@v2 is not in .* --revision v2"):
        resolve_folder("pirl-test/missing@v2")


def test_make_policy_and_run_config_take_a_hub_id(cached_policy):
    from app.rl.factory import make_policy
    from app.run.config import PIRLRunConfig

    policy = make_policy(policy_path=REPO_ID)
    local = make_policy(policy_path=cached_policy)
    assert all(torch.equal(v, local.state_dict()[k]) for k, v in policy.state_dict().items())
    cfg = PIRLRunConfig(policy_path=Path(REPO_ID))
    cfg.validate("learner")
    assert cfg.make_policy().config.type == "pirl_flow"
    with pytest.raises(ValueError, match=r"^policy_path=pirl-test/missing is not in the Hugging Face cache"):
        PIRLRunConfig(policy_path=Path("pirl-test/missing")).validate("learner")
    with pytest.raises(ValueError, match=r"policy_path=/nonexistent/bc: no such folder"):
        PIRLRunConfig(policy_path=Path("/nonexistent/bc")).validate("learner")


def test_vla_base_path_takes_a_hub_id(hub_cache):
    from app.rl.adapters.tiny import build_tiny_smolvla
    from app.rl.vla_policy import PIRLVLAConfig, PIRLVLAPolicy

    torch.set_num_threads(1)
    base = build_tiny_smolvla(hub_cache.parent / "vlm")
    cache_repo(hub_cache, "pirl-test/tiny_smolvla", base.save_pretrained)
    cfg = PIRLVLAConfig(base_type="smolvla", base_path="pirl-test/tiny_smolvla", device="cpu", task="reach")
    policy = PIRLVLAPolicy(cfg)
    assert policy.config.base_path == "pirl-test/tiny_smolvla"  # the id is kept: the saved config is portable
    assert all(torch.equal(policy.base.state_dict()[k], v) for k, v in base.state_dict().items())
    with pytest.raises(HubError, match=r"^policy.base_path=lerobot-missing/smolvla is not in the Hugging"):
        PIRLVLAPolicy(PIRLVLAConfig(base_type="smolvla", base_path="lerobot-missing/smolvla", device="cpu"))
    with pytest.raises(FileNotFoundError, match="base_path=/nonexistent/vla: no such folder"):
        PIRLVLAPolicy(PIRLVLAConfig(base_type="smolvla", base_path="/nonexistent/vla", device="cpu"))


# ---- pushing the final policy (app/learner/hub.py) -----------------------------------------------------


class FakeApi:
    """Records what would go to the hub; `fail` raises from create_commit."""

    token = "hf_fake"

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))

    def create_commit(self, **kw):
        self.calls.append(("create_commit", kw))
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(commit_url=f"https://huggingface.co/{kw['repo_id']}/commit/abc")


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def _run_cfg(**policy):
    from app.rl.lerobot_policy import PIRLFlowConfig

    return SimpleNamespace(policy=PIRLFlowConfig(device="cpu", **policy), learner=SimpleNamespace())


def test_push_uploads_the_folder_and_a_model_card_in_one_commit(tmp_path, online):
    from app.learner.hub import push_final_policy

    folder = Path(save_policy(tmp_path / "pretrained_model"))
    api = FakeApi()
    url = push_final_policy(folder, "me/reach", private=True, tags=("so101",), api=api)
    assert url == "https://huggingface.co/me/reach/commit/abc"
    (_, repo), (_, commit) = api.calls
    assert repo == {"repo_id": "me/reach", "private": True, "exist_ok": True, "repo_type": "model"}
    files = {op.path_in_repo: op for op in commit["operations"]}
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    card = files["README.md"].path_or_fileobj.decode()
    assert "library_name: lerobot" in card and "- pirl_flow" in card and "- so101" in card
    assert "pirl eval --policy me/reach" in card


def test_push_errors_say_how_to_upload_later(tmp_path, online, monkeypatch):
    from app.learner.hub import HubPushError, push_final_policy

    folder = Path(save_policy(tmp_path / "pretrained_model"))
    later = f"upload it later with `huggingface-cli upload me/reach {folder}`"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    with pytest.raises(HubPushError, match="not logged in to the Hugging Face hub") as err:
        push_final_policy(folder, "me/reach", api=SimpleNamespace(token=None))
    assert str(err.value).endswith(later)
    with pytest.raises(HubPushError, match=r"the hub is unreachable \(no route\)"):
        push_final_policy(folder, "me/reach", api=FakeApi(fail=ConnectionError("no route")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubPushError, match="HF_HUB_OFFLINE is set"):
        push_final_policy(folder, "me/reach", api=FakeApi())
    with pytest.raises(HubPushError, match="is not a LeRobot pretrained folder"):
        push_final_policy(tmp_path, "me/reach", api=FakeApi())


def test_push_options_the_lerobot_way(tmp_path, online, monkeypatch):
    from app.learner import hub
    from app.rl import hub as options

    monkeypatch.setenv("HF_TOKEN", "hf_fake")

    # pirl's policy types do not push by default (LeRobot's default is to push); asking means push_to_hub
    assert options.push_settings(_run_cfg()) is None and options.push_problem(_run_cfg()) is None
    assert options.push_settings(_run_cfg(push_to_hub=False, repo_id="me/x")) is None
    s = options.push_settings(_run_cfg(push_to_hub=True, repo_id="me/x", private=True, license="mit"))
    assert (s.repo_id, s.private, s.license) == ("me/x", True, "mit")
    assert "is not a hub repository id" in options.push_problem(_run_cfg(push_to_hub=True, repo_id="me/x/y"))
    # a --policy_path run: learner.push_to_hub / learner.repo_id
    path_run = SimpleNamespace(policy=None, learner=SimpleNamespace(push_to_hub=True, repo_id=None))
    assert options.push_problem(path_run).startswith("learner.push_to_hub=true needs the repository")
    path_run.learner.repo_id = "me/y"
    assert options.push_problem(path_run) is None and options.push_settings(path_run).repo_id == "me/y"
    both = SimpleNamespace(policy=_run_cfg().policy, learner=path_run.learner)
    assert options.push_problem(both).startswith("learner.push_to_hub is for --policy_path runs")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # refused at start, not after hours of training
    assert "HF_HUB_OFFLINE is set" in options.push_problem(path_run)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert "not logged in to the Hugging Face hub" in options.push_problem(path_run)
    monkeypatch.setenv("HF_TOKEN", "hf_fake")

    # after the run: the final checkpoint's pretrained_model/ goes up; a failure is a line, never a raise
    ckpt = tmp_path / "checkpoints" / "000003"
    save_policy(ckpt / "pretrained_model")
    pushed, lines = [], []
    monkeypatch.setattr(
        hub, "push_final_policy", lambda folder, repo, *a, **k: pushed.append((folder, repo)) or "u"
    )
    assert hub.push_after_run(path_run, ckpt, lines.append) == "u"
    assert pushed == [(ckpt / "pretrained_model", "me/y")]
    assert hub.push_after_run(_run_cfg(), ckpt, lines.append) is None and len(pushed) == 1  # not asked

    def refuse(*_a, **_k):
        raise hub.HubPushError("not pushed to me/y: not logged in")

    monkeypatch.setattr(hub, "push_final_policy", refuse)
    assert hub.push_after_run(path_run, ckpt, lines.append) is None
    assert lines[-1] == "learner: not pushed to me/y: not logged in"
    assert hub.push_after_run(path_run, tmp_path / "none", lines.append) is None
    assert "without a final checkpoint with pretrained_model/" in lines[-1]
