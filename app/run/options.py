"""The option tree of a config dataclass and the checks of a file's keys and the command line's options
against it, with "did you mean" suggestions (used by app/run/errors.py's `parse_config`).

draccus only knows the options of the choice types a parse ends up with; this walks the dataclass tree
with the choices the file and the command line pick, so an unknown or misspelled option is caught before
draccus prints its 1,000-line usage.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from app.run.errors import ConfigError

# What a `<section>.type=<name>` names, in words (the cross-registry hint: a leader given as a robot).
_LABELS = {"robot": "robot", "teleop": "teleoperator", "policy": "policy", "algorithm": "algorithm"}

# Options that moved, old dotted path -> new one. An old spelling (a file key or a command-line option) is
# refused with one line that names its new place instead of a "did you mean" guess, so old configs and
# commands say how to fix themselves. Applies only where the new path exists and the old one does not.
RENAMED = {
    # wandb logging moved to the run config's top-level `wandb` section, LeRobot's WandBConfig
    "learner.wandb": "wandb.enable",
    "learner.wandb_project": "wandb.project",
}

# Kinds of a node in the option tree.
SECTION, CHOICE, LEAF, MAPPING = "section", "choice", "leaf", "mapping"
# a choice field whose type is not set: its node holds the options of every registered choice
UNION = "union"
NODES = (SECTION, CHOICE, UNION)


# ---- the option tree ---------------------------------------------------------------------------------


def _is_choice(tp: Any) -> bool:
    from draccus.utils import is_choice_type

    return isinstance(tp, type) and hasattr(tp, "get_known_choices") and is_choice_type(tp)


def _unwrap(tp: Any) -> list[Any]:
    """`X | None` -> [X]; `X | Y` -> [X, Y]; anything else -> [tp]."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: fall back to the raw one
        hints = {}
    return tuple((f.name, hints.get(f.name, f.type)) for f in dataclasses.fields(cls))


def _kind(tp: Any) -> tuple[str, list[type]]:
    """(kind, classes to descend into) of a field type."""
    for t in _unwrap(tp):
        if _is_choice(t):
            return CHOICE, [t]
    classes = [t for t in _unwrap(tp) if isinstance(t, type) and dataclasses.is_dataclass(t)]
    if classes:
        return SECTION, classes
    origin = typing.get_origin(tp)
    if any(typing.get_origin(t) in (dict, Mapping) or t is dict for t in _unwrap(tp)) or origin is dict:
        return MAPPING, []
    return LEAF, []


def option_tree(cls: type, chosen: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every option path of `cls` ("learner.max_updates", "policy.rl.optim.actor_lr", ...) -> its kind.

    A choice field (policy, robot, teleop, algorithm) descends into the class `chosen[path]` names when it
    is a known choice, else into every registered choice (the union of their options).
    """
    chosen = dict(chosen or {})
    tree: dict[str, str] = {}

    def walk(c: type, prefix: str, stack: tuple[type, ...]) -> None:
        if c in stack or len(stack) > 10:
            return
        for name, tp in _fields(c):
            path = f"{prefix}{name}"
            kind, classes = _kind(tp)
            tree.setdefault(path, kind)
            if kind == CHOICE:
                base = classes[0]
                tree[f"{path}.type"] = LEAF
                known = base.get_known_choices()
                name_ = chosen.get(path) or base.default_choice_name()
                subs = [known[name_]] if name_ in known else list(dict.fromkeys(known.values()))
                if name_ not in known:
                    tree[path] = UNION
                for sub in subs:
                    if isinstance(sub, type) and dataclasses.is_dataclass(sub):
                        walk(sub, path + ".", (*stack, c))
            elif kind == SECTION:
                for sub in classes:
                    walk(sub, path + ".", (*stack, c))

    walk(cls, "", ())
    return tree


def choice_fields(cls: type, chosen: Mapping[str, str] | None = None) -> dict[str, type]:
    """Option path of every choice field reachable with `chosen` -> its registry base class."""
    out: dict[str, type] = {}
    chosen = dict(chosen or {})

    def walk(c: type, prefix: str, stack: tuple[type, ...]) -> None:
        if c in stack or len(stack) > 10:
            return
        for name, tp in _fields(c):
            path = f"{prefix}{name}"
            kind, classes = _kind(tp)
            if kind == CHOICE:
                out[path] = classes[0]
                known = classes[0].get_known_choices()
                if chosen.get(path) in known:
                    walk(known[chosen[path]], path + ".", (*stack, c))
            elif kind == SECTION:
                for sub in classes:
                    walk(sub, path + ".", (*stack, c))

    walk(cls, "", ())
    return out


# ---- suggestions ---------------------------------------------------------------------------------------


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def suggest(bad: str, tree: Mapping[str, str], n: int = 3, below_only: bool = False) -> list[str]:
    """The option paths closest to `bad` (a misspelt or misplaced dotted path), best first: below the
    longest section of `bad` that exists if any is close there, else anywhere (unless `below_only`)."""
    paths = [
        p
        for p, kind in tree.items()
        if kind in (LEAF, MAPPING) and (not p.endswith(".type") or bad.endswith("type"))
    ]
    parts = bad.split(".")
    head = ""
    # the longest prefix of `bad` that exists: suggest below it first (learner.max_update -> learner.*)
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if tree.get(head) in NODES:
            rest = ".".join(parts[cut:])
            below = [p for p in paths if p.startswith(head + ".")]
            scored = sorted(
                (
                    (max(_ratio(rest, p[len(head) + 1 :]), _ratio(parts[-1], p.rsplit(".", 1)[-1])), p)
                    for p in below
                ),
                key=lambda s: -s[0],
            )
            hits = [p for s, p in scored if s >= 0.75][:n]
            if hits or below_only:
                return hits
            break
        head = ""
    if below_only:
        return []
    # a whole option under a section it does not belong to: `learner.wandb.enable` -> wandb.enable
    for cut in range(1, len(parts) - 1):
        tail = ".".join(parts[cut:])
        if tail in paths:
            return [tail]
    unions = [u for u, kind in tree.items() if kind == UNION and not bad.startswith(u + ".")]
    scored = []
    for p in paths:
        if head and p.startswith(head + "."):
            continue  # judged above; their shared prefix would only inflate the score
        if any(p.startswith(u + ".") for u in unions):
            continue  # options of a type nobody chose (every teleoperator's, when there is none)
        comps = p.split(".")
        best = _ratio(bad, p)
        best = max(best, 0.95 * _ratio(parts[-1], comps[-1]) if len(parts) == 1 else 0.0)
        # an option in the wrong section: `actor.max_updates` -> learner.max_updates
        best = max(best, 0.9 * max(_ratio(a, b) for a in parts for b in comps))
        scored.append((best, -len(p), p))
    scored.sort(reverse=True)
    if not scored or scored[0][0] < 0.75:
        return []
    top = scored[0][0]
    return [p for s, _, p in scored if s >= max(0.75, top - 0.05)][:n]


def did_you_mean(options: Sequence[str], dashes: str) -> str:
    if not options:
        return ""
    return "; did you mean " + " or ".join(f"{dashes}{o}" for o in options) + "?"


# ---- command-line options --------------------------------------------------------------------------------


def split_options(args: Sequence[str]) -> list[tuple[str, str | None]]:
    """`--a.b=v` / `--a.b v` -> [("a.b", "v")]; a bare word where an option belongs is an error."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            if not eq:
                nxt = args[i + 1] if i + 1 < len(args) else None
                if nxt is not None and not nxt.startswith("--"):
                    value, eq = nxt, "="
                    i += 1
            out.append((key, value if eq else None))
        elif arg.startswith("-") and len(arg) > 1 and not _is_number(arg):
            raise ConfigError(f"unknown option {arg}: options look like --section.option=value")
        else:
            raise ConfigError(
                f"unexpected argument {arg!r}: options look like --section.option=value "
                "(a value with spaces needs quotes)"
            )
        i += 1
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---- the checks ---------------------------------------------------------------------------------------------


def _flatten(d: Mapping[str, Any], tree: Mapping[str, str], prefix: str = "") -> Iterable[str]:
    """Key paths of a nested dict, stopping at leaves and mappings (whose keys are free)."""
    for key, value in d.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict) and tree.get(path) in NODES:
            yield from _flatten(value, tree, path + ".")


def _prefixes(path: str) -> list[str]:
    """ "a.b.c" -> ["a", "a.b"] (the proper prefixes)."""
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _check_sections(d: Mapping[str, Any], tree: Mapping[str, str], where: str, prefix: str = "") -> None:
    """A section or choice in a file must be a JSON object (or null where it is optional)."""
    for key, value in d.items():
        path = f"{prefix}{key}"
        if tree.get(path) in NODES:
            if isinstance(value, dict):
                _check_sections(value, tree, where, path + ".")
            elif value is not None:
                kind = "an array" if isinstance(value, list) else f"{type(value).__name__} {value!r}"
                raise ConfigError(f"{where}{path} must be a JSON object {{...}}, not {kind}")


def _known(path: str, tree: Mapping[str, str]) -> bool:
    if path in tree:
        return True
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        kind = tree.get(".".join(parts[:cut]))
        if kind is not None:  # free keys of a mapping; a leaf's value type is draccus's to check
            return kind in (MAPPING, LEAF)
    return False


def chosen_types(file_data: Mapping[str, Any], options: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    chosen: dict[str, str] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for key, value in d.items():
            if key == "type" and isinstance(value, str) and prefix:
                chosen[prefix[:-1]] = value
            elif isinstance(value, dict):
                walk(value, f"{prefix}{key}.")

    walk(file_data, "")
    for key, value in options:
        if key.endswith(".type") and value is not None:
            chosen[key[: -len(".type")]] = value.strip("'\"")
    return chosen


def _owner(path: str, chosen: Mapping[str, str], choices: Mapping[str, type], dashes: str = "") -> str:
    """ " for policy.type=pirl_flow" when `path` lies under a choice field whose type is set, plus the
    types that do have that option ("robot.task is an option of robot.type=sim_so101")."""
    for field_path in sorted(choices, key=len, reverse=True):
        if path.startswith(field_path + ".") and field_path in chosen:
            base = choices[field_path]
            rel = path[len(field_path) + 1 :]
            others = [
                name
                for name, sub in base.get_known_choices().items()
                if name != chosen[field_path] and dataclasses.is_dataclass(sub) and rel in option_tree(sub)
            ]
            text = f" for {field_path}.type={chosen[field_path]}"
            if others:
                text += f": it is an option of {dashes}{field_path}.type={' or '.join(others[:3])}"
            return text
    return ""


def _unknown(
    path: str,
    dashes: str,
    tree: Mapping[str, str],
    chosen: Mapping[str, str],
    choices: Mapping[str, type],
    hint: str,
) -> str:
    """ "--learner.max_update; did you mean --learner.max_updates?" (what follows "unknown option ")."""
    owner = _owner(path, chosen, choices, dashes)
    if ": it is an option of" in owner:
        close = suggest(path, tree, below_only=True)
        if not close:
            return f"{dashes}{path}{owner}"
        owner = owner.split(":", 1)[0]
    return f"{dashes}{path}{owner}" + (did_you_mean(suggest(path, tree), dashes) or f"; {hint}")


def renamed(path: str, value: str | None, tree: Mapping[str, str], where: str) -> str | None:
    """The line for an option or key that `RENAMED` moved (None if `path` is not one): `where` is "--" for
    the command line, else the "config file X: " prefix."""
    new = RENAMED.get(path)
    if new is None or new not in tree or path in tree:
        return None
    if where == "--":
        use = f"--{new}={value}" if value is not None else f"--{new}=VALUE"
        return f"option --{path} was renamed: use {use}"
    section, _, rest = new.partition(".")
    return f'{where}key {path} was renamed to {new}: write it as "{section}": {{"{rest}": ...}}'


def check_choice(field_path: str, name: str, base: type, all_choices: Mapping[str, type], where: str) -> None:
    """`name` must be registered for `base`; else say what it is (a teleoperator given as a robot) or
    what is close."""
    known = base.get_known_choices()
    if name in known:
        return
    label = _LABELS.get(field_path.rsplit(".", 1)[-1], field_path)
    for other_path, other in all_choices.items():
        if other is base or name not in other.get_known_choices():
            continue
        other_label = _LABELS.get(other_path.rsplit(".", 1)[-1], other_path)
        hint = ""
        swapped = (
            name.replace("leader", "follower") if "leader" in name else name.replace("follower", "leader")
        )
        if swapped != name and swapped in known:
            hint = f" (and {where}{field_path}.type={swapped} for the {label})"
        raise ConfigError(
            f"{where}{field_path}.type={name} is a {other_label}, not a {label}: "
            f"use {where}{other_path}.type={name}{hint}"
        )
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"{where}{field_path}.type={name} is not a known {label} type; {hint}choose one of {', '.join(known)}"
    )


def check_options(
    cls: type,
    options: Sequence[tuple[str, str | None]],
    file_data: Mapping[str, Any] | None = None,
    file_label: str | None = None,
    command: str = "pirl",
) -> None:
    """Refuse unknown keys (file) and options (command line) and unknown `type`s, with suggestions."""
    file_data = file_data or {}
    chosen = chosen_types(file_data, options)
    choices = choice_fields(cls, chosen)
    from_cli = {key[: -len(".type")] for key, v in options if key.endswith(".type") and v is not None}
    for field_path, base in choices.items():
        if field_path not in chosen:
            continue
        if field_path in from_cli:
            check_choice(field_path, chosen[field_path], base, choices, "--")
            continue
        try:
            check_choice(field_path, chosen[field_path], base, choices, "")
        except ConfigError as exc:
            raise ConfigError(f"config file {file_label}: {exc}") from None
    tree = option_tree(cls, chosen)
    help_hint = f"`{command} --help-all` lists every option"
    if file_data:
        _check_sections(file_data, tree, f"config file {file_label}: ")
        for path in _flatten(file_data, tree):
            moved = renamed(path, None, tree, f"config file {file_label}: ")
            if moved:
                raise ConfigError(moved)
            if not _known(path, tree):
                raise ConfigError(
                    f"config file {file_label}: unknown key "
                    + _unknown(path, "", tree, chosen, choices, help_hint)
                )
    for key, value in options:
        mapping = next((m for m in _prefixes(key) if tree.get(m) == MAPPING), None)
        if mapping is not None:
            raise ConfigError(
                f"--{key}: {mapping} is a mapping, which the command line can only set whole "
                f"(--{mapping}='{{...}}' as JSON); put it in the config file instead"
            )
        moved = renamed(key, value, tree, "--")
        if moved:
            raise ConfigError(moved)
        if not _known(key, tree):
            raise ConfigError("unknown option " + _unknown(key, "--", tree, chosen, choices, help_hint))
        if value is None and tree.get(key) == LEAF:
            raise ConfigError(f"option --{key} needs a value: --{key}=VALUE")
    # a choice section with options but no type (and no default): draccus would say "expected a dict"
    for field_path, base in choices.items():
        given = [
            k
            for k in (*_flatten(file_data, tree), *(k for k, _ in options))
            if k.startswith(field_path + ".")
        ]
        if given and field_path not in chosen and base.default_choice_name() is None:
            raise ConfigError(
                f"{given[0]} is given but {field_path}.type is not: set --{field_path}.type "
                f"(one of {', '.join(base.get_known_choices())})"
            )
