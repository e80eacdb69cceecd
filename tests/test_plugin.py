"""pirl checkpoints load in stock LeRobot tools through the `lerobot_policy_pirl` plugin distribution.

LeRobot 0.6.1 finds third-party policies by distribution name: `register_third_party_plugins()` imports
every installed distribution named `lerobot_policy_*`. scripts/venv.sh registers the plugin in each clone's
`.venv`; `pip install . ./plugins/lerobot_policy_pirl` does the same for a pip install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
import torch

from app.rl.config import PIRLConfig
from app.rl.lerobot_policy import PIRLFlowConfig, PIRLFlowPolicy
from app.rl.native import NativeFlowConfig

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "lerobot_policy_pirl"

# What a stock LeRobot tool (lerobot-eval, lerobot-record, ...) does before it reads `--policy.path`.
STOCK_LOAD = """
import json, sys
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import get_policy_class
from lerobot.utils.import_utils import register_third_party_plugins

before = "pirl_flow" in PreTrainedConfig.get_known_choices()
register_third_party_plugins()
path = sys.argv[1]
cfg = PreTrainedConfig.from_pretrained(path)
policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg)
total = sum(float(p.double().sum()) for p in policy.state_dict().values() if p.is_floating_point())
print(json.dumps({
    "before": before,
    "type": cfg.type,
    "class": type(policy).__module__ + "." + type(policy).__name__,
    "chunk_size": cfg.native.chunk_size,
    "sum": total,
    "vla": "pirl_vla" in PreTrainedConfig.get_known_choices(),
}))
"""


def _tiny_checkpoint(path: Path) -> float:
    native = NativeFlowConfig(state_dim=3, action_dim=2, chunk_size=4, obs_hidden=16, expert_hidden=32)
    torch.manual_seed(0)
    policy = PIRLFlowPolicy(PIRLFlowConfig(native=native, rl=PIRLConfig(exec_horizon=2), device="cpu"))
    policy.save_pretrained(path)
    return sum(float(p.double().sum()) for p in policy.state_dict().values() if p.is_floating_point())


def test_plugin_distribution_is_installed_in_this_venv():
    try:
        dist = metadata.distribution("lerobot_policy_pirl")
    except metadata.PackageNotFoundError:
        pytest.fail("lerobot_policy_pirl is not installed here: run ./scripts/venv.sh (make test does)")
    # LeRobot compares the raw Name with str.startswith and imports it as a module name
    assert dist.metadata["Name"] == "lerobot_policy_pirl"


def test_stock_lerobot_loader_loads_a_pirl_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    want = _tiny_checkpoint(ckpt)
    assert json.loads((ckpt / "config.json").read_text())["type"] == "pirl_flow"
    out = subprocess.run(
        [sys.executable, "-c", STOCK_LOAD, str(ckpt)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the repository: the plugin must come from the installed distribution
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["before"] is False, "pirl_flow was registered before LeRobot imported its plugins"
    assert got["type"] == "pirl_flow" and got["chunk_size"] == 4 and got["vla"]
    assert got["class"] == "app.rl.lerobot_policy.PIRLFlowPolicy"
    assert got["sum"] == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.slow  # a setuptools build: seconds, and only packaging changes can break it
def test_plugin_builds_a_wheel_named_for_lerobot(tmp_path):
    """`pip install ./plugins/lerobot_policy_pirl` installs a distribution LeRobot recognises."""
    src = tmp_path / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("lerobot_policy_pirl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        fields = dict(line.split(": ", 1) for line in zf.read(meta).decode().splitlines() if ": " in line)
    assert fields["Name"] == "lerobot_policy_pirl"
    assert "lerobot_policy_pirl/__init__.py" in names
