"""The docs (docs/*.md and README.md) name only commands and options that exist, and repeat no claim the
code has outgrown.

- Every `pirl <command>` the docs write (bash blocks and inline code) is a command of `app/cli.py`, every
  `pirl calibrate <sub>` one of its sub-commands; every command is in the README's table, and each answers
  `--help` with exit code 0 (in this process: the same `main` the `pirl` script runs).
- On a `pirl <command> ...` line, every `--section.option` is in that command's option tree
  (`app.run.options.option_tree` over its config dataclass, with every registered choice's options: a
  robot option is known if some robot type has it). `python <script> --opt` lines name an existing script
  that defines `"--opt"`; `make <target>` an existing target; `lerobot-<tool>` one of LeRobot's commands.
- Every other `--option` anywhere in the docs (prose, tables, comments, printed output) is an option of
  some pirl command or of a script the docs run, or is in ALLOWED below with its reason.
- STALE_CLAIMS: sentences the docs once carried that the code has since made false ("no command to
  behaviour-clone", "the console passes no overrides"), each with the fact in the code that refutes it;
  when that fact stops being true the test says to drop the entry.

What each `pirl` line of docs/recipes.md does when parsed in full: tests/test_recipes.py.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.cli import COMMANDS
from app.cli import main as pirl

REPO = Path(__file__).resolve().parents[1]
DOCS = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]

# Options every command line takes besides its config fields: help, and the config file draccus reads.
GENERIC = {"help", "help-all", "config", "config_path"}

# Options the docs may name that no option tree has, and why. An entry nothing uses any more fails
# `test_allow_list_entries_are_still_needed`, so this list can only shrink.
ALLOWED: dict[str, str] = {
    "name": "docs/eval.md's placeholder in 'options are written `--name=value`'",
    "learner.max_update": "docs/runtime.md shows the error a misspelt option gets (`did you mean ...`)",
}

# Command-line tools whose options are their own (not pirl's): the docs' lines with them are not checked
# beyond the tool's name.
FOREIGN_TOOLS = {
    "export", "mkdir", "openssl", "source", "sudo", "ls", "id", "newgrp", "pytest", "git", "cat", "tail",
    "huggingface-cli", "tensorboard", "pip", "deactivate", "echo", "cd", "udevadm", "chmod", "usermod",
}  # fmt: skip


# ------------------------------------------------------------------------------------------ reading docs


@dataclass(frozen=True)
class Command:
    doc: str  # file name relative to the repository
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Mention:
    doc: str
    option: str  # without the leading dashes, without a value: "learner.max_updates", "safety." (a section)


_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
_SPAN = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")  # inline code, at most one line break inside
_OPTION = re.compile(r"(?<![\w/-])--([a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*\.?)")


def _argv(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=True)
    except ValueError:  # an unbalanced quote in a sketch of a command: words are enough here
        return text.split()


def _strip(tool: str) -> str:
    return tool.rsplit("/", 1)[-1] if tool.startswith((".venv/", "./.venv/")) else tool


def parse_doc(doc: str, text: str) -> tuple[list[Command], list[Mention]]:
    """A doc's command lines (bash blocks, inline code that starts with a command) and every other
    `--option` it names (prose, tables, comments, other code blocks)."""
    commands: list[Command] = []
    mentions: list[Mention] = []

    def loose(doc: str, text: str) -> None:
        mentions.extend(Mention(doc, m.group(1)) for m in _OPTION.finditer(text))

    def command(doc: str, line: str) -> bool:
        argv = _argv(line)
        if not argv or not re.fullmatch(r"[\w./-]+", argv[0]):
            return False
        argv = [_strip(argv[0]), *argv[1:]]
        if argv[0].startswith("python") and argv[1:2] == ["-m"] and len(argv) > 2:  # `python -m app[.x]`
            by_module = {m: n for n, (m, _) in COMMANDS.items()}
            module = argv[2]
            if module == "app":
                argv = ["pirl", *argv[3:]]
            elif module in by_module or f"{module}.main" in by_module:
                argv = ["pirl", by_module.get(module) or by_module[f"{module}.main"], *argv[3:]]
        commands.append(Command(doc, tuple(argv)))
        return True

    for lang, body in _FENCE.findall(text):
        if lang == "bash":
            for line in body.replace("\\\n", " ").splitlines():
                code, _, comment = line.partition(" #")
                if code.lstrip().startswith("#"):
                    loose(doc, line)
                else:
                    command(doc, code)
                    loose(doc, comment)
        else:
            loose(doc, body)
    prose = _FENCE.sub("", text)
    for span in (" ".join(s.split()) for s in _SPAN.findall(prose)):
        first = _strip(span.split(" ", 1)[0])
        if " " in span and (
            first in ("pirl", "make", *FOREIGN_TOOLS) or first.startswith(("lerobot-", "python"))
        ):
            command(doc, span)
        else:
            loose(doc, span)
    loose(doc, _SPAN.sub("", prose))
    return commands, mentions


@functools.cache
def read_docs() -> tuple[tuple[Command, ...], tuple[Mention, ...]]:
    commands, mentions = [], []
    for path in DOCS:
        c, m = parse_doc(str(path.relative_to(REPO)), path.read_text())
        commands += c
        mentions += m
    return tuple(commands), tuple(mentions)


def pirl_lines(commands) -> list[Command]:
    return [c for c in commands if c.argv[0] == "pirl"]


# ------------------------------------------------------------------------------------------ option trees


def _full_tree(cls: type) -> dict[str, str]:
    """`option_tree` with every choice field open: the union of every registered choice's options."""
    from app.run.options import CHOICE, option_tree

    chosen: dict[str, str] = {}
    while True:
        tree = option_tree(cls, chosen)
        more = {p: "<any>" for p, kind in tree.items() if kind == CHOICE and p not in chosen}
        if not more:
            return tree
        chosen.update(more)


@functools.cache
def command_trees() -> dict[str, dict[str, str]]:
    """`pirl <command>` (and `calibrate <sub>`) -> its option tree."""
    from app.bc import BCCommandConfig
    from app.console.main import ConsoleConfig
    from app.demo.cli import DemoCLIConfig
    from app.doctor import DoctorConfig
    from app.eval.config import EvalConfig
    from app.run.config import PIRLRunConfig
    from app.run.registry import register_choices
    from calibration import cli as calibrate

    register_choices()
    run = _full_tree(PIRLRunConfig)
    trees = {
        "doctor": _full_tree(DoctorConfig),
        "demo": _full_tree(DemoCLIConfig),
        "bc": _full_tree(BCCommandConfig),
        "learner": run,
        "actor": run,
        "console": {**run, **_full_tree(ConsoleConfig)},  # options it does not know go to the actor
        "eval": _full_tree(EvalConfig),
    }
    for sub, (config_class, _) in calibrate._COMMANDS.items():  # noqa: SLF001
        trees["calibrate" if sub is None else f"calibrate {sub}"] = _full_tree(config_class)
    return trees


def known(option: str, tree: dict[str, str]) -> bool:
    """`option` is in `tree`: a field, a section named with a trailing dot, or a key below a mapping."""
    from app.run.options import MAPPING, NODES

    if option in GENERIC:
        return True
    if option.endswith("."):
        return tree.get(option[:-1]) in (*NODES, MAPPING)
    if option in tree:
        return True
    parts = option.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        kind = tree.get(".".join(parts[:cut]))
        if kind is not None:
            return kind == MAPPING  # free keys (robot.cameras.front...); below a leaf: nothing
    return False


def _options(argv: tuple[str, ...]) -> list[str]:
    """`--a.b=v` -> "a.b"; a placeholder tail (`--teleop.*`, `--policy.rl.<key>=...`) names its section."""
    return [re.split(r"[=<*]", a[2:], maxsplit=1)[0] for a in argv if a.startswith("--")]


def _script(argv: tuple[str, ...]) -> Path | None:
    """The file a `python ...` line runs (`python -m pkg.mod` or `python path.py`), None for `python -c`."""
    args = list(argv[1:])
    if args[:1] == ["-m"] and len(args) > 1:
        base = REPO / args[1].replace(".", "/")
        return base.with_suffix(".py") if base.with_suffix(".py").exists() else base / "__main__.py"
    return REPO / args[0] if args and not args[0].startswith("-") else None


def script_options(commands) -> dict[str, set[str]]:
    """Options (`"--name"` literals) of every script a doc line runs with python."""
    out = {}
    for c in commands:
        if c.argv[0].startswith("python"):
            script = _script(c.argv)
            if script is not None and script.is_file():
                out[str(script.relative_to(REPO))] = set(
                    re.findall(r"[\"']--([\w.-]+)[\"']", script.read_text())
                )
    return out


# ------------------------------------------------------------------------------------------ the checks
# Each returns its problems, one line each, so the self-test below can show it catches a planted mistake.


def bad_commands(commands) -> list[str]:
    """`pirl <command>` / `pirl calibrate <sub>` that do not exist."""
    from calibration.cli import SUBCOMMANDS

    bad = []
    for c in pirl_lines(commands):
        name = c.argv[1] if len(c.argv) > 1 else "--help"
        if not re.fullmatch(r"[a-z][a-z_-]*", name):  # `pirl --help`, `pirl <command>`, `pirl ...`
            continue
        sub = c.argv[2] if len(c.argv) > 2 else ""
        if name not in COMMANDS:
            bad.append(f"{c.doc}: `{shlex.join(c.argv)}`: pirl has no command {name!r}")
        elif name == "calibrate" and re.fullmatch(r"[a-z_]+", sub) and sub not in SUBCOMMANDS:
            bad.append(f"{c.doc}: `{shlex.join(c.argv)}`: no `pirl calibrate {sub}`")
    return bad


def bad_options_on_pirl_lines(commands) -> list[str]:
    trees = command_trees()
    bad = []
    for c in pirl_lines(commands):
        if len(c.argv) < 2 or c.argv[1] not in COMMANDS:
            continue
        name = c.argv[1]
        if name == "calibrate" and len(c.argv) > 2 and f"calibrate {c.argv[2]}" in trees:
            name = f"calibrate {c.argv[2]}"
        bad += [
            f"{c.doc}: `{shlex.join(c.argv)}`: --{o}" for o in _options(c.argv) if not known(o, trees[name])
        ]
    return bad


def bad_other_lines(commands) -> list[str]:
    """`python <script> --opt`, `make <target>`, `lerobot-<tool>` lines that name nothing real."""
    makefile = (REPO / "Makefile").read_text()
    lerobot_tools = {
        ep.name
        for ep in importlib.metadata.entry_points(group="console_scripts")
        if ep.name.startswith("lerobot")
    }
    scripts = script_options(commands)
    bad = []
    for c in commands:
        tool, where = c.argv[0], f"{c.doc}: `{shlex.join(c.argv)}`"
        if tool.startswith("python"):
            script = _script(c.argv)
            if script is None:
                continue
            name = str(script.relative_to(REPO))
            if name not in scripts:
                bad.append(f"{where}: no such script {name}")
                continue
            bad += [
                f"{where}: {name} has no option --{o}" for o in _options(c.argv) if o not in scripts[name]
            ]
        elif tool == "make" and len(c.argv) > 1 and "=" not in c.argv[1]:
            if not re.search(rf"^{re.escape(c.argv[1])}:", makefile, flags=re.M):
                bad.append(f"{where}: the Makefile has no target {c.argv[1]}")
        elif tool.startswith("lerobot-") and tool not in lerobot_tools:
            bad.append(f"{where}: LeRobot has no command {tool}")
    return bad


def known_anywhere(option: str, commands) -> bool:
    if any(known(option, tree) for tree in command_trees().values()):
        return True
    return any(option in opts for opts in script_options(commands).values())


def bad_mentions(mentions, commands) -> list[str]:
    bad = {
        f"{m.doc}: --{m.option}"
        for m in mentions
        if m.option not in ALLOWED and not known_anywhere(m.option, commands)
    }
    return sorted(bad)


# A repository path in a doc: a top-level folder of this repository, then a file with an extension or a
# folder ending in "/"; not part of a longer path (`~/.cache/.../calibration/robots/...` is LeRobot's).
_REPO_PATH = re.compile(
    r"(?<![\w/.~-])((?:app|hardware|calibration|benchmarks|tests|configs|scripts|plugins|docs)/"
    r"[\w./-]*?(?:\w\.(?:py|json|md|sh|tcss|toml|svg)\b|/(?=[\s`),;:]|$)))",
    flags=re.M,
)


def missing_paths(docs: dict[str, str]) -> list[str]:
    """Repository files and folders a doc names that do not exist (placeholders like `<name>` aside)."""
    bad = set()
    for doc, text in docs.items():
        for path in _REPO_PATH.findall(text):
            if "<" not in path and "*" not in path and not (REPO / path).exists():
                bad.add(f"{doc}: {path}")
    return sorted(bad)


def stale_claims(docs: dict[str, str]) -> list[str]:
    bad = []
    for pattern, fact in STALE_CLAIMS:
        if not fact():
            bad.append(f"the code changed: {pattern!r} may be true now; drop it from STALE_CLAIMS")
            continue
        for doc, text in docs.items():
            flat = re.sub(r"[`*_]", "", re.sub(r"\s+", " ", text))
            for hit in re.finditer(pattern, flat, flags=re.I):
                bad.append(f"{doc}: '...{flat[max(0, hit.start() - 80) : hit.end() + 80]}...'")
    return bad


# ------------------------------------------------------------------------------------------ stale claims


def _console_forwards_actor_options() -> bool:
    from app.console.main import split_argv

    return split_argv(["--config", "c.json", "--robot.port=/dev/ttyACM0"])[1] == ["--robot.port=/dev/ttyACM0"]


def _actor_records_a_dataset() -> bool:
    return any(
        re.search(r"EpisodeRecorder|LeRobotDataset\.create", p.read_text())
        for p in (REPO / "app" / "actor").rglob("*.py")
    )


# (pattern, over whitespace-normalised doc text; the fact in the code that makes it false)
STALE_CLAIMS = [
    (r"no (pirl )?command (yet )?to behaviour-clone|no BC command|no command for BC", lambda: "bc" in COMMANDS),
    (r"console passes no (option|override)s?", _console_forwards_actor_options),
    (r"(the actor|pirl actor|pirl console|the console) (does not|doesn't|never|cannot|can't) (yet )?records?"
     r"|(the actor|pirl actor|the console) records? (nothing|no (takeovers|episodes|datasets?))",
     _actor_records_a_dataset),
]  # fmt: skip


# ------------------------------------------------------------------------------------------ the tests


def test_every_pirl_command_in_the_docs_exists():
    commands = read_docs()[0]
    assert len(pirl_lines(commands)) > 50, "the reader found too few `pirl` lines: did the doc format change?"
    assert not bad_commands(commands), "\n".join(bad_commands(commands))


def test_the_readme_lists_every_command():
    listed = set(re.findall(r"^\| `pirl (\w+)", (REPO / "README.md").read_text(), flags=re.M))
    assert listed == set(COMMANDS), (
        f"README's command table lists {sorted(listed)}; pirl has {list(COMMANDS)}"
    )


def documented_commands() -> list[str]:
    return sorted(
        {c.argv[1] for c in pirl_lines(read_docs()[0]) if len(c.argv) > 1 and c.argv[1] in COMMANDS}
    )


@pytest.mark.parametrize("name", documented_commands())
def test_every_documented_command_answers_help(name: str):
    """What the docs name exists and starts (a doc once said there was no BC command while `pirl bc` was
    there): `pirl <command> --help` exits 0 and prints a usage, in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = pirl([name, "--help"])
        except SystemExit as exc:  # the draccus-parsed commands (bc, demo, doctor, console) exit from --help
            code = exc.code
    assert code in (0, None), f"`pirl {name} --help` exited {code}"
    assert "usage" in out.getvalue().lower()[:2000], out.getvalue()[:500]


def test_options_on_pirl_lines_are_options_of_that_command():
    bad = bad_options_on_pirl_lines(read_docs()[0])
    assert not bad, "options the command does not have:\n" + "\n".join(bad)


def test_other_command_lines_name_existing_scripts_targets_and_tools():
    bad = bad_other_lines(read_docs()[0])
    assert not bad, "\n".join(bad)


def test_every_option_the_docs_mention_exists():
    commands, mentions = read_docs()
    bad = bad_mentions(mentions, commands)
    assert not bad, "options no pirl command or documented script has (fix the doc, or ALLOWED + why):\n" + (
        "\n".join(bad)
    )


def test_allow_list_entries_are_still_needed():
    commands, mentions = read_docs()
    for option, why in ALLOWED.items():
        assert option in {m.option for m in mentions}, (
            f"ALLOWED[{option!r}] ({why}): no doc names it; drop it"
        )
        assert not known_anywhere(option, commands), f"--{option} is a real option now; drop it from ALLOWED"


def test_every_repository_path_the_docs_name_exists():
    bad = missing_paths({str(p.relative_to(REPO)): p.read_text() for p in DOCS})
    assert not bad, "\n".join(bad)


def test_no_doc_repeats_a_claim_the_code_refutes():
    bad = stale_claims({str(p.relative_to(REPO)): p.read_text() for p in DOCS})
    assert not bad, "\n".join(bad)


SAMPLE = """
```bash
pirl frobnicate --x=1                        # no such command
pirl calibrate recalibrate --robot.id=a      # no such sub-command
pirl eval --policy P --learner.max_updates=3  # a learner option on an eval line
python benchmarks/nope.py --fast
make nothing
lerobot-nonsense --repo_id x
pirl learner --config configs/sim_pirl_reach.json --learner.max_updates=3 --robot.cameras.front.fps=30
```

Inline: `pirl bc --dataset.root=d --stepz=3`, a mention of `--safety.max_step_per_jiont` and
--episode.time_limit_s (fine), and the console
passes no overrides to the actor; the actor does not record takeovers. See app/eval/stats.py, app/eval/, app/eval/statz.py and
`~/.cache/huggingface/lerobot/calibration/robots/so_follower/arm1.json` (not ours).
"""


def test_the_checks_catch_planted_mistakes():
    """Each check, on a doc with one mistake of its kind (and lines that are fine), flags exactly those."""
    commands, mentions = parse_doc("sample.md", SAMPLE)
    assert [c.argv[:2] for c in pirl_lines(commands)][:2] == [("pirl", "frobnicate"), ("pirl", "calibrate")]
    assert [b.split(": ", 2)[-1] for b in bad_commands(commands)] == [
        "pirl has no command 'frobnicate'",
        "no `pirl calibrate recalibrate`",
    ]
    assert [b.rsplit(": ", 1)[-1] for b in bad_options_on_pirl_lines(commands)] == [
        "--learner.max_updates",
        "--stepz",
    ]
    assert [b.rsplit(": ", 1)[-1] for b in bad_other_lines(commands)] == [
        "no such script benchmarks/nope.py",
        "the Makefile has no target nothing",
        "LeRobot has no command lerobot-nonsense",
    ]
    assert bad_mentions(mentions, commands) == ["sample.md: --safety.max_step_per_jiont"]
    assert len(stale_claims({"sample.md": SAMPLE})) == 2  # the overrides and the recording claims
    assert missing_paths({"sample.md": SAMPLE}) == [
        "sample.md: app/eval/statz.py",
        "sample.md: benchmarks/nope.py",
    ]
