"""Config mistakes an operator can fix: one line that names the file or option, and what to do.

draccus reports a bad config as a traceback (its exceptions are not ValueErrors), a 1,000-line argparse
usage (an unknown option) or a multi-line "could not decode" tree. `parse_config` checks what draccus
would choke on first (the file: readable, JSON, an object; every key and option against the real option
tree of the dataclass, with the choice types the file and the command line pick; every `type` against its
registry) and turns whatever draccus still raises into a `ConfigError` with one line:

    unknown option --learner.max_update; did you mean --learner.max_updates?
    config file run.json: unknown key policy.num_steps for policy.type=pirl_flow; did you mean policy.rl.num_steps?
    --robot.type=so101_leader is a teleoperator, not a robot: use --teleop.type=so101_leader (and ...)

`pirl learner`, `pirl actor`, `pirl eval` and `pirl calibrate` print it after their name and exit 2.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config file or option the operator must fix; the message is one line and names it."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: object) -> str:
    return " ".join(str(text).split())


# ---- the config file ---------------------------------------------------------------------------------------


def read_config_file(path: str | Path, hint: str = "") -> dict[str, Any]:
    """The JSON object in `path`, or a ConfigError that says what is wrong with the file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"config file {path} not found{hint}")
    if p.is_dir():
        raise ConfigError(f"config file {path} is a directory, not a JSON file{hint}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({one_line(exc)})") from None
    if p.suffix.lower() in (".yaml", ".yml", ".toml"):
        return {}  # draccus reads these itself; its errors are translated by `explain`
    if not text.strip():
        raise ConfigError(f"config file {path} is empty; start from a recipe in configs/ (docs/recipes.md)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", type(None): "null"}.get(type(data), type(data).__name__)
        raise ConfigError(
            f'config file {path} must hold one JSON object ({{"policy": ..., "robot": ...}}) at the top '
            f"level, not {kind}"
        )
    return data


# ---- what draccus raises -------------------------------------------------------------------------------------

_UNION_HEAD = "Could not decode the value into any of the given types:"
_PATH_MSG = re.compile(r"^`([^`]+)`: (.*)$", re.S)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _root_cause(exc: BaseException) -> BaseException | None:
    """The first exception in the cause chain that is not draccus's own (a __post_init__ ValueError)."""
    from draccus.utils import DraccusException

    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if not isinstance(cur, DraccusException):
            return cur
        cur = cur.__cause__
    return None


def _unpack(path: str, message: str) -> tuple[str, str]:
    """Dig through draccus's "could not decode into any of the given types" nesting to the real message."""
    for _ in range(10):
        text = message.strip()
        if text.startswith(_UNION_HEAD):
            lines = [ln.strip() for ln in text[len(_UNION_HEAD) :].strip().splitlines() if ln.strip()]
            first = lines[0] if lines else ""
            sub = first.split(": ", 1)[1] if ": " in first else first
            message = "\n".join([sub, *lines[1:]])
            continue
        m = _PATH_MSG.match(text)
        if m:
            path = f"{path}.{m.group(1)}" if path else m.group(1)
            message = m.group(2)
            continue
        return path, text
    return path, message


def _qualify(path: str, message: str, tree: Mapping[str, str]) -> str:
    """Name the option a __post_init__ message speaks of with its full dotted path."""
    from app.run.options import LEAF, MAPPING

    words = _WORD.findall(message)
    if words:
        first = words[0]
        full = f"{path}.{first}" if path else first
        if message.startswith(first) and (tree.get(full) == LEAF or ("." in first and full in tree)):
            return full + message[len(first) :]
        if first in tree and "." in first:
            return message
    leaves = [
        p for p, kind in tree.items() if kind in (LEAF, MAPPING) and p.startswith(path + "." if path else "")
    ]
    for w in words:
        hits = [p for p in leaves if p == f"{path}.{w}"] or [p for p in leaves if p.endswith("." + w)]
        if len(hits) == 1:
            return f"{hits[0]}: {message}"
    return f"{path}: {message}" if path else message


def explain(
    exc: BaseException,
    tree: Mapping[str, str],
    cli_keys: Iterable[str] = (),
    file_label: str | None = None,
) -> str:
    """One line for an exception draccus raised while decoding a config."""
    from draccus.utils import DecodingError

    from app.run.options import did_you_mean, suggest

    cli_keys = set(cli_keys)
    path = ".".join(exc.key_path) if isinstance(exc, DecodingError) else ""
    message = exc.message if isinstance(exc, DecodingError) else str(exc)
    path, message = _unpack(path, message)
    cause = _root_cause(exc)
    if cause is not None and message.startswith(("Couldn't instantiate", "Failed when parsing")):
        text = _qualify(path, one_line(cause), tree)
    else:
        m = re.match(r"Missing required field\(s\) (.*) for (\S+)", one_line(message))
        if m:
            names = [n.strip("` ") for n in m.group(1).split(",")]
            if path in ("robot", "teleop") and names == ["port"]:
                return (
                    f"{path} needs a serial port: set {path}.port in the config or --{path}.port=/dev/ttyACM0 "
                    "(find it with `lerobot-find-port`)"
                )
            full = [f"{path}.{n}" if path else n for n in names]
            return f"{', '.join(full)} must be set ({m.group(2)} has no default for it)"
        m = re.match(r"The fields (.*) are not valid for (\S+)", one_line(message))
        if m:
            names = [n.strip("` ") for n in m.group(1).split(",")]
            bad = f"{path}.{names[0]}" if path else names[0]
            return f"unknown option {bad} ({m.group(2)} has no {names[0]})" + did_you_mean(
                suggest(bad, tree), ""
            )
        text = f"{path}: {one_line(message)}" if path else one_line(message)
    text = re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)
    lead = _WORD.match(text)
    option = lead.group(0) if lead and lead.group(0) in tree else path
    if not option:
        return text
    if any(k == option or option.startswith(k + ".") for k in cli_keys):
        return f"--{text}" if text.startswith(option) else f"--{option}: {text}"
    if any(k.startswith(option + ".") for k in cli_keys):
        return text  # a section that both the file and the command line set
    return f"config file {file_label}: {text}" if file_label else text


def describe_load_error(exc: BaseException) -> str | None:
    """A draccus ParsingError from loading some JSON file (LeRobot reads calibration files with draccus):
    name the file. None when `exc` is not that."""
    m = re.search(r"Failed to load config from <[^>]*name='([^']+)'", str(exc))
    if not m:
        return None
    cause = exc.__cause__
    reason = f": {one_line(cause)}" if cause is not None else ""
    hint = ""
    if "calibration" in m.group(1):
        hint = "; it is a calibration file: delete it and calibrate the device again (`pirl calibrate`)"
    return f"file {m.group(1)} is not valid JSON{reason}{hint}"


# ---- the one entry point -----------------------------------------------------------------------------------


def parse_config(
    cls: type,
    args: Sequence[str],
    config_path: str | Path | None = None,
    *,
    command: str = "pirl",
    file_hint: str = "",
) -> Any:
    """draccus.parse(cls, config_path, args) in JSON mode, where every operator mistake is a ConfigError
    (or FileNotFoundError for a missing file) with one line naming the file or option."""
    import draccus
    from draccus.utils import DraccusException

    from app.run.options import check_options, chosen_types, option_tree, split_options

    file_data = read_config_file(config_path, file_hint) if config_path is not None else {}
    options = split_options(args)
    check_options(cls, options, file_data, str(config_path) if config_path is not None else None, command)
    err = io.StringIO()
    try:
        with draccus.config_type("json"), contextlib.redirect_stderr(err):
            cfg = draccus.parse(cls, config_path=config_path, args=list(args), prog=command)
    except SystemExit as exc:  # argparse: it printed a usage of every option, then its reason
        reason = next(
            (ln.split("error: ", 1)[1] for ln in reversed(err.getvalue().splitlines()) if "error: " in ln),
            f"the options do not parse (exit {exc.code})",
        )
        m = re.match(r"argument (--\S+): invalid choice: '([^']*)' \(choose from (.*)\)", reason)
        if m:
            options_ = [c.strip(" '") for c in m.group(3).split(",")]
            close = difflib.get_close_matches(m.group(2), options_, n=1, cutoff=0.6)
            hint = f"did you mean {m.group(1)}={close[0]}? " if close else ""
            raise ConfigError(
                f"{m.group(1)}={m.group(2)} is not a valid value; {hint}choose one of {', '.join(options_)}"
            ) from None
        raise ConfigError(f"{reason}; `{command} --help` shows the options") from None
    except DraccusException as exc:
        chosen = chosen_types(file_data, options)
        tree = option_tree(cls, chosen)
        label = str(config_path) if config_path is not None else None
        raise ConfigError(explain(exc, tree, (k for k, _ in options), label)) from None
    if err.getvalue():  # warnings a config's __post_init__ logged while it parsed fine
        sys.stderr.write(err.getvalue())
    return cfg
