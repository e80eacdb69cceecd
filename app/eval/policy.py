"""The policy under evaluation: loading a checkpoint folder and checking it fits the robot before anything
moves.

`--policy` may name
- a LeRobot pretrained folder (`config.json` + `model.safetensors`): the demo's `bc_policy/`, a `pirl bc`
  output, a learner checkpoint's `pretrained_model/`, a LeRobot checkpoint;
- a `pirl learner` checkpoint folder (`<output_dir>/checkpoints/<version>/`): its `pretrained_model/` when
  it has one (the final checkpoint), else the policy is rebuilt from the run config in its `meta.json`
  (same seed, `policy_path` / `policy.base_path`) and its trainable tensors are loaded from `state.pt`,
  after checking the rebuilt frozen part against the recorded `frozen_digest`;
- a Hugging Face hub id `owner/name[@revision]` of either (e.g. a policy `pirl learner` pushed with
  `--policy.push_to_hub`): resolved through the hub cache by `resolve_policy` (`app.rl.hub`; offline, the
  cached snapshot).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# A `pirl learner` checkpoint folder's layout (app/learner/checkpoint.py writes it).
from app.run.sections import CHECKPOINT_META, CHECKPOINT_STATE, PRETRAINED_DIR

STATE = "observation.state"
IMAGES = "observation.images."
# Paths in a pirl_vla policy config that a rebuild reads (relative ones: to the learner's folder).
_VLA_PATH_FIELDS = ("base_path", "stats_path", "tokenizer_path")


class EvalError(RuntimeError):
    """The evaluation cannot run as configured; the message says what to change."""


def resolve_policy(name: str | Path) -> Path:
    """`--policy` as a local folder: the path itself, or a hub id's snapshot in the hub cache. A hub id
    that cannot be had raises EvalError (one line); a missing local path comes back as it is."""
    from app.rl.hub import HubError, resolve_folder

    try:
        return resolve_folder(name)
    except HubError as exc:
        raise EvalError(f"--policy {exc}") from exc


def policy_folder_problem(path: str | Path) -> str | None:
    """Why `--policy path` cannot be evaluated, or None when it is a folder `load_policy` reads (above).

    Only looks at file names (no weights are read): for `EvalConfig.validate`. The message follows
    `--policy <path> `."""
    path = Path(path)
    if not path.is_dir():
        return "is not a folder"
    if (path / "config.json").is_file():
        if not (path / "model.safetensors").is_file():
            return "has a config.json but no model.safetensors (weights)"
        return None
    if (path / CHECKPOINT_META).is_file():  # a pirl learner checkpoint
        pretrained = path / PRETRAINED_DIR
        if (pretrained / "config.json").is_file():
            return policy_folder_problem(pretrained)
        if not (path / CHECKPOINT_STATE).is_file():
            return (
                f"is a pirl learner checkpoint without {CHECKPOINT_STATE} or {PRETRAINED_DIR}/ "
                "(neither its trainable state nor a LeRobot policy folder): pick another checkpoint"
            )
        return None
    hint = ""
    if (path / PRETRAINED_DIR / "config.json").is_file():
        hint = f"; did you mean {path / PRETRAINED_DIR}?"
    elif (path / "checkpoints").is_dir() or (path / "LAST").is_file():
        root = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        hint = (
            f"; for a `pirl learner` run use one of its checkpoints, {root}/<version> ({root}/LAST names "
            "the newest)"
        )
    return (
        "is not a LeRobot pretrained folder (no config.json) nor a `pirl learner` checkpoint "
        f"({CHECKPOINT_META} + {CHECKPOINT_STATE}){hint}"
    )


def load_policy(path: str | Path) -> tuple[Any, Callable | None, Callable | None]:
    """A policy folder (module docstring) -> (policy in eval mode, preprocessor, postprocessor).

    pirl_flow policies normalise inside the model, so they need no processors. Other LeRobot policies
    (e.g. LeRobot SAC checkpoints) are run through the processor pipelines saved next to them, when there.
    """
    folder = path = resolve_policy(path)
    if not (folder / "config.json").is_file() and (folder / CHECKPOINT_META).is_file():
        if (folder / PRETRAINED_DIR / "config.json").is_file():
            path = folder / PRETRAINED_DIR  # the final checkpoint: its LeRobot folder is the same weights
        elif (folder / CHECKPOINT_STATE).is_file():
            return load_checkpoint_policy(folder), None, None
    problem = policy_folder_problem(path)
    if problem is not None:
        raise EvalError(f"--policy {path} {problem}")
    from lerobot.configs.policies import PreTrainedConfig

    from app.run.registry import register_choices

    register_choices()
    try:
        pcfg = PreTrainedConfig.from_pretrained(path)
    except Exception as exc:  # draccus decoding errors, unknown policy types
        raise EvalError(f"--policy {path}: config.json is not a LeRobot policy config ({exc})") from exc
    pcfg.device = "cuda" if torch.cuda.is_available() and pcfg.device == "cuda" else "cpu"
    if pcfg.type == "pirl_flow":
        from app.rl.lerobot_policy import PIRLFlowPolicy as policy_cls
    elif pcfg.type == "pirl_vla":  # a VLA trained by PI-RL (its pre-processor runs in ChunkPlanner.plan)
        from app.rl.vla_policy import PIRLVLAPolicy as policy_cls
    else:
        from lerobot.policies.factory import get_policy_class

        policy_cls = get_policy_class(pcfg.type)
    try:
        with contextlib.redirect_stdout(None):  # LeRobot prints "Loading weights from local directory"
            policy = policy_cls.from_pretrained(path, config=pcfg).eval()
    except Exception as exc:  # missing/mismatched tensors in model.safetensors
        raise EvalError(
            f"--policy {path}: the weights do not load into a {pcfg.type} policy ({exc})"
        ) from exc
    pre = post = None
    if not has_pirl_model(policy) and (Path(path) / "policy_preprocessor.json").is_file():
        from lerobot.policies.factory import make_pre_post_processors

        pre, post = make_pre_post_processors(pcfg, pretrained_path=str(path))
    return policy, pre, post


def load_checkpoint_policy(path: str | Path) -> Any:
    """A `pirl learner` checkpoint without `pretrained_model/` -> its policy in eval mode: rebuilt from the
    run config recorded in meta.json, frozen part checked by digest, trainable tensors from state.pt."""
    from lerobot.configs.policies import PreTrainedConfig

    from app.rl.checkpoint_state import CheckpointMismatchError, restore_policy_state
    from app.rl.factory import make_policy, register_policies

    path = Path(path)
    meta_file = path / CHECKPOINT_META
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise EvalError(f"--policy {path}: cannot read {meta_file} ({exc})") from exc
    config = meta.get("config")
    if not isinstance(config, dict):
        why = meta.get("config_error", "it has no 'config'")
        raise EvalError(
            f"--policy {path}: this checkpoint has no {PRETRAINED_DIR}/ and {meta_file} holds no run config "
            f"to rebuild the policy from ({why}); evaluate the run's final checkpoint instead"
        )
    register_policies()
    cwd = Path(meta.get("cwd") or ".")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pcfg = policy_path = None
    try:
        if config.get("policy") is not None:
            import draccus

            pcfg = draccus.decode(PreTrainedConfig, config["policy"])
            for name in _VLA_PATH_FIELDS:
                if getattr(pcfg, name, None) is not None:
                    setattr(pcfg, name, str(_relocate(getattr(pcfg, name), cwd)))
            pcfg.device = device if pcfg.device == "cuda" else "cpu"
        elif config.get("policy_path") is not None:
            from app.rl.hub import resolve_folder

            policy_path = resolve_folder(_relocate(config["policy_path"], cwd))  # a hub id: the cache
            saved = json.loads((policy_path / "config.json").read_text())
            device = device if saved.get("device") == "cuda" else "cpu"
        else:
            raise ValueError("the run config names neither policy nor policy_path")
        seed = int(config.get("seed", 0))
        policy = make_policy(pcfg, policy_path, seed=seed, device=pcfg.device if pcfg else device)
    except Exception as exc:  # missing base files, a config this LeRobot cannot decode
        raise EvalError(
            f"--policy {path}: cannot rebuild the policy from the run config in {meta_file} ({exc}); the "
            f"checkpoint holds only the trainable weights, so the files the run was built from (policy_path, "
            f"policy.base_path) must still be there, or evaluate a checkpoint with {PRETRAINED_DIR}/"
        ) from exc
    if not has_pirl_model(policy):
        raise EvalError(f"--policy {path}: a {policy.config.type} policy has no PI-RL model to load into")
    try:
        state = torch.load(path / CHECKPOINT_STATE, map_location="cpu", weights_only=True)
        restore_policy_state(policy, state, meta, path)
    except CheckpointMismatchError as exc:
        raise EvalError(f"--policy {path}: {exc}") from exc
    except Exception as exc:  # a truncated or foreign state.pt
        raise EvalError(f"--policy {path}: {path / CHECKPOINT_STATE} does not load ({exc})") from exc
    return policy.eval()


def _relocate(value: str | Path, cwd: Path) -> Path:
    """A path from the run config: as given when it exists here, else relative to the learner's folder."""
    p = Path(value)
    if p.is_absolute() or p.exists() or not (cwd / p).exists():
        return p
    return cwd / p


def has_pirl_model(policy: Any) -> bool:
    from app.rl.model import PIRLModel

    return isinstance(getattr(policy, "model", None), PIRLModel)


def policy_io(policy: Any) -> tuple[int, int, list[str], bool]:
    """(state size, action size, camera names, needs environment_state) from the policy's features."""
    feats = dict(getattr(policy.config, "input_features", {}) or {})
    out = dict(getattr(policy.config, "output_features", {}) or {})
    if STATE not in feats or "action" not in out:
        raise EvalError(
            f"the policy ({policy.config.type}) has no {STATE!r} input or 'action' output feature; pirl eval "
            "runs joint-state policies"
        )
    cams = [k.removeprefix(IMAGES) for k in feats if k.startswith(IMAGES)]
    needs_env = "observation.environment_state" in feats
    return int(feats[STATE].shape[0]), int(out["action"].shape[0]), cams, needs_env


def check_compatible(
    policy: Any, robot: Any, state_keys: list[str], action_keys: list[str], image_keys: list[str]
) -> None:
    """Refuse a policy that does not fit the robot, before anything moves; say what fits."""
    state_dim, action_dim, cams, needs_env = policy_io(policy)
    rtype = getattr(getattr(robot, "config", None), "type", type(robot).__name__)
    if needs_env:
        raise EvalError("the policy reads observation.environment_state, which pirl's robots do not provide")
    if state_dim != len(state_keys):
        raise EvalError(
            f"state size mismatch: the policy expects {STATE} of {state_dim} values, the robot ({rtype}) gives "
            f"{len(state_keys)} ({', '.join(state_keys)}). Evaluate on the robot/task it was trained for, "
            "or list the keys it was trained on with --state_keys='[...]'"
        )
    if action_dim != len(action_keys):
        raise EvalError(
            f"action size mismatch: the policy outputs {action_dim} values, the robot ({rtype}) takes "
            f"{len(action_keys)} ({', '.join(action_keys)})"
        )
    missing = [k for k in cams if k not in image_keys]
    if missing:
        raise EvalError(f"the policy needs cameras {missing}; pass --image_keys='{cams}'")
    feats = robot.observation_features
    for key in image_keys:
        shape = feats.get(key)
        if not isinstance(shape, tuple) or len(shape) != 3:
            have = [k for k, v in feats.items() if isinstance(v, tuple)]
            raise EvalError(f"camera {key!r} is not an image observation of {rtype}; its cameras: {have}")
