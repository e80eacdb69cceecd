"""Policy folders named by Hugging Face hub id: `lerobot/smolvla_base`, `me/pirl_reach@v2`.

Wherever a policy folder is named (`--policy_path`, `--policy.base_path` of a pirl_vla, `pirl eval
--policy`), `resolve_folder` turns the name into a local folder: an existing local path as it is; a name
that looks like a repo id (`owner/name`, optional `@revision`: a branch, tag or commit) through
`huggingface_hub.snapshot_download`, which reuses the hub cache (`HF_HUB_CACHE`, default
`~/.cache/huggingface/hub`) and, offline (`HF_HUB_OFFLINE=1`, or the hub unreachable), returns the cached
snapshot. Anything else (a mistyped local path) comes back unchanged, so the caller's own "no such
folder" message applies. `push_settings` / `push_problem` read the push options of a run config (the push
itself: app/learner/hub.py). Pure: no robot, no torch.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# owner/name as the hub spells them (huggingface_hub.utils.validate_repo_id has the full rules), with an
# optional @revision.
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[\w./-]+))?$")
_PUSH_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_TRUE = ("1", "true", "yes", "on")


class HubError(ValueError):
    """A hub id that cannot be turned into a local folder; the message is one line and says what to do."""


def split_repo_id(name: str | Path) -> tuple[str, str | None] | None:
    """`owner/name[@revision]` -> (repo_id, revision or None); None when `name` is not shaped like one
    (an absolute or ./relative path, more than one `/`, `..`, a first part that is a local folder)."""
    text = str(name)
    m = _REPO_ID.match(text)
    if m is None or text.startswith((".", "~")) or ".." in text or "--" in m["repo"]:
        return None
    owner = m["repo"].split("/", 1)[0]
    if Path(owner).is_dir():  # outputs/bc_polcy: a mistyped local path, not a hub id
        return None
    return m["repo"], m["rev"]


def looks_like_repo_id(name: str | Path) -> bool:
    return split_repo_id(name) is not None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE")
    return env.strip().lower() in _TRUE if env is not None else bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str | None:
    """HF_HUB_CACHE as set now (None: huggingface_hub's default, `$HF_HOME/hub`)."""
    return os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or None


def resolve_folder(name: str | Path, allow_patterns: list[str] | None = None) -> Path:
    """A local folder for `name` (module docstring): the path itself when it exists or is not a repo id,
    else the hub snapshot (downloaded when online and not cached). Raises HubError (one line)."""
    path = Path(name)
    if path.exists():
        return path
    parsed = split_repo_id(name)
    if parsed is None:
        return path
    repo_id, revision = parsed
    return Path(download(repo_id, revision, allow_patterns=allow_patterns))


def download(repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None) -> str:
    """`snapshot_download` with pirl's one-line errors; offline it only looks in the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = repo_id if revision is None else f"{repo_id}@{revision}"
    fetch = f"huggingface-cli download {repo_id}" + (f" --revision {revision}" if revision else "")
    offline = hub_offline()
    try:
        return snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=hub_cache_dir(),
            local_files_only=offline,
            allow_patterns=allow_patterns,
        )
    except GatedRepoError as exc:
        raise HubError(
            f"{label} is a gated repository on the Hugging Face hub: accept its terms on its hub page, then "
            "log in with `huggingface-cli login` (or set HF_TOKEN)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise HubError(f"{label}: the Hugging Face hub has no revision {revision!r} of {repo_id}") from exc
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"{label} is neither a local folder nor a model repository on the Hugging Face hub (a private "
            "one needs `huggingface-cli login` or HF_TOKEN)"
        ) from exc
    except IncompleteSnapshotError as exc:
        raise HubError(
            f"{label}: the Hugging Face cache holds an incomplete copy and the hub is unreachable: run "
            f"`{fetch}` with network to complete it, or pass a local folder"
        ) from exc
    except HfHubHTTPError as exc:  # 401 on a private repo, hub errors (5xx)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 401:
            raise HubError(
                f"{label}: the Hugging Face hub refused access (401): log in with `huggingface-cli login` "
                "(or set HF_TOKEN), or pass a local folder"
            ) from exc
        raise HubError(f"{label}: downloading from the Hugging Face hub failed ({_one_line(exc)})") from exc
    except (LocalEntryNotFoundError, OSError) as exc:  # offline / unreachable and not cached
        raise HubError(
            f"{label} is not in the Hugging Face cache and the hub is unreachable (offline): download it "
            f"once with `{fetch}` on a machine with network, or pass a local folder"
        ) from exc
    except HFValidationError as exc:
        raise HubError(f"{label} is not a valid Hugging Face repository id ({_one_line(exc)})") from exc


# ---- pushing: which run-config options ask for it (app/learner/hub.py pushes) ---------------------------


@dataclass(frozen=True)
class PushSettings:
    repo_id: str
    private: bool | None = None
    tags: tuple[str, ...] = ()
    license: str | None = None
    option: str = "policy"  # which section the settings came from, for messages


def _default_push(policy: Any) -> bool:
    f = {x.name: x for x in dataclasses.fields(policy)}.get("push_to_hub")
    return bool(f.default) if f is not None and f.default is not dataclasses.MISSING else False


def push_settings(cfg: Any) -> PushSettings | None:
    """What the run config asks to push, or None. `learner.push_to_hub` (for `--policy_path` runs) wins;
    else LeRobot's `policy.push_to_hub` + `policy.repo_id`. While a policy type keeps LeRobot's default
    push_to_hub=true, it pushes only when a repo_id is given (a plain `--policy.type=...` never pushes)."""
    learner = getattr(cfg, "learner", None)
    if getattr(learner, "push_to_hub", False):
        return PushSettings(str(learner.repo_id or ""), getattr(learner, "private", None), option="learner")
    policy = getattr(cfg, "policy", None)
    if policy is None or not getattr(policy, "push_to_hub", False):
        return None
    if policy.repo_id is None and _default_push(policy):
        return None  # LeRobot's default, not a request
    return PushSettings(
        str(policy.repo_id or ""), policy.private, tuple(policy.tags or ()), policy.license, option="policy"
    )


def push_problem(cfg: Any) -> str | None:
    """Why the push options cannot work (checked at start, before any training, so a run does not train
    for hours and then fail to push): no or a malformed repo_id, offline, not logged in. None: fine."""
    learner = getattr(cfg, "learner", None)
    if getattr(learner, "push_to_hub", False) and getattr(cfg, "policy", None) is not None:
        return (
            "learner.push_to_hub is for --policy_path runs; with a policy section use LeRobot's "
            "--policy.push_to_hub=true --policy.repo_id=<owner/name>"
        )
    settings = push_settings(cfg)
    if settings is None:
        return None
    if not settings.repo_id:
        return (
            f"{settings.option}.push_to_hub=true needs the repository: --{settings.option}.repo_id=<owner/name> "
            f"(or --{settings.option}.push_to_hub=false)"
        )
    if not _PUSH_REPO_ID.match(settings.repo_id) or "--" in settings.repo_id or ".." in settings.repo_id:
        return (
            f"{settings.option}.repo_id={settings.repo_id!r} is not a hub repository id: write it owner/name"
        )
    off = f"(or --{settings.option}.push_to_hub=false and upload the checkpoint later)"
    if hub_offline():
        return f"{settings.option}.push_to_hub=true but HF_HUB_OFFLINE is set: unset it {off}"
    from huggingface_hub import get_token

    if not get_token():
        return (
            f"{settings.option}.push_to_hub=true but this machine is not logged in to the Hugging Face hub: "
            f"run `huggingface-cli login` or set HF_TOKEN {off}"
        )
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
