"""Pushing the final policy of a `pirl learner` run to the Hugging Face hub, the LeRobot way.

    pirl learner --config configs/sim_pirl_reach.json --policy.push_to_hub=true --policy.repo_id=me/reach

The switches are LeRobot's own `PreTrainedConfig` fields, which pirl_flow and pirl_vla inherit:
`policy.push_to_hub`, `policy.repo_id`, `policy.private`, `policy.tags`, `policy.license`. A run started
from `--policy_path` has no policy section: it uses `learner.push_to_hub`, `learner.repo_id` and
`learner.private`. At exit, after the final checkpoint's `pretrained_model/` is written, that folder
(config.json + model.safetensors, plus a model card) goes to the repository in one commit; `pirl eval
--policy <repo_id>` and `--policy_path=<repo_id>` then take it from the hub. A failed push never loses
the run: the checkpoint stays on disk and the message says how to upload it later. Which options ask for a
push, and their check at start: `app.rl.hub.push_settings` / `push_problem`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.rl.hub import hub_offline, looks_like_repo_id, push_settings
from app.run.sections import PRETRAINED_DIR

log = logging.getLogger(__name__)

COMMIT_MESSAGE = "Upload PI-RL policy (pirl learner)"


class HubPushError(RuntimeError):
    """The policy could not be pushed; the message is one line and says what to do."""


def model_card(
    repo_id: str, config: dict[str, Any], tags: tuple[str, ...] = (), license: str | None = None
) -> str:
    """A short README.md: LeRobot's card metadata (library lerobot, robotics) and how to run it with pirl."""
    from huggingface_hub import ModelCardData

    kind = str(config.get("type", "policy"))
    base = config.get("base_path")
    data = ModelCardData(
        license=license or "apache-2.0",
        library_name="lerobot",
        pipeline_tag="robotics",
        tags=sorted({"robotics", "lerobot", "pirl", "reinforcement-learning", kind, *tags}),
        base_model=base if isinstance(base, str) and looks_like_repo_id(base) else None,
    )
    return (
        f"---\n{data.to_yaml()}\n---\n\n# {repo_id}\n\nA `{kind}` policy trained online with PI-RL by "
        "`pirl learner` (a LeRobot pretrained folder: `config.json` + `model.safetensors`).\n\n"
        f"```bash\npirl eval --policy {repo_id} --episodes 50\npirl learner --policy_path={repo_id} ...\n```\n"
    )


def push_final_policy(
    pretrained_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    *,
    tags: tuple[str, ...] = (),
    license: str | None = None,
    commit_message: str = COMMIT_MESSAGE,
    api: Any = None,
) -> str:
    """Upload a LeRobot pretrained folder (and a model card, unless it has a README.md) to `repo_id` in
    one commit, creating the repository if needed. Returns the commit's URL. Raises HubPushError."""
    import json

    folder = Path(pretrained_dir)
    later = f"upload it later with `huggingface-cli upload {repo_id} {folder}`"
    if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
        raise HubPushError(
            f"not pushed to {repo_id}: {folder} is not a LeRobot pretrained folder (config.json + "
            "model.safetensors)"
        )
    if hub_offline():
        raise HubPushError(f"not pushed to {repo_id}: the hub is off (HF_HUB_OFFLINE is set); {later}")
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    api = api if api is not None else HfApi()
    if not (getattr(api, "token", None) or get_token()):
        raise HubPushError(
            f"not pushed to {repo_id}: not logged in to the Hugging Face hub (run `huggingface-cli login` or "
            f"set HF_TOKEN to a token with write access); {later}"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    ops = [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in files
    ]
    if not (folder / "README.md").exists():
        config = json.loads((folder / "config.json").read_text())
        card = model_card(repo_id, config, tags, license).encode()
        ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
    try:
        api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.create_commit(
            repo_id=repo_id, operations=ops, commit_message=commit_message, repo_type="model"
        )
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status in (401, 403):
            why = f"the hub refused it ({status}): the token needs write access to {repo_id.split('/')[0]}"
        else:
            why = f"the hub answered {status}: {_one_line(exc)}"
        raise HubPushError(f"not pushed to {repo_id}: {why}; {later}") from exc
    except OSError as exc:  # no network, DNS, TLS, proxy
        raise HubPushError(
            f"not pushed to {repo_id}: the hub is unreachable ({_one_line(exc)}); {later}"
        ) from exc
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}")


def push_after_run(
    cfg: Any, checkpoint: str | Path | None, say: Callable[[str], None] | None = print
) -> str | None:
    """The learner's last step: push `<checkpoint>/pretrained_model/` when the run config asks for it
    (`push_settings`). Never raises: a failure is one line through `say` (and the log); returns the URL."""
    say = say or (lambda _line: None)
    settings = push_settings(cfg)
    if settings is None:
        return None
    folder = Path(checkpoint) / PRETRAINED_DIR if checkpoint is not None else None
    try:
        if folder is None or not folder.is_dir():
            raise HubPushError(
                f"not pushed to {settings.repo_id}: the run ended without a final checkpoint with {PRETRAINED_DIR}/"
            )
        say(f"learner: pushing {folder} to the Hugging Face hub as {settings.repo_id} ...")
        url = push_final_policy(
            folder, settings.repo_id, settings.private, tags=settings.tags, license=settings.license
        )
    except HubPushError as exc:
        log.error("%s", exc)
        say(f"learner: {exc}")
        return None
    except Exception as exc:  # noqa: BLE001 - a push must never cost the run its clean exit
        log.exception("push to the hub failed")
        say(f"learner: not pushed to {settings.repo_id}: {_one_line(exc)}")
        return None
    say(f"learner: pushed {folder} to {url}")
    return url


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
