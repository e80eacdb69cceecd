"""Start a learner and actors as separate processes and follow them (for `pirl demo`, tests, scripts).

    from app.run.launch import RunProcesses, free_port

    run = RunProcesses.start("configs/sim_pirl_reach.json", output_dir="outputs/demo", actors=1,
                             learner_args=["--learner.max_updates=50"], actor_args=["--actor.episodes=0"])
    for line in run.lines(timeout=600):   # progress lines of every process, tagged ("learner", text)
        print(*line)
        if run.finished: break
    run.stop()                             # SIGINT the learner (final checkpoint), then the actors

Each process runs `python -m app learner|actor --config ...` exactly as a user would (a learner over
several ranks, `learner_ranks=N`: `python -m torch.distributed.run --standalone --nproc_per_node N -m app
learner ...`, i.e. torchrun, docs/runtime.md "Several GPUs"), on loopback, with
the port chosen here (a free one unless given) passed as `--transport.port`. Their stdout+stderr go to
`<output_dir>/logs/<name>.log`; progress lines (the ones starting with "learner:" / "actor ") are also
queued for `lines()`. Metrics: `read_metrics(output_dir)` parses `<output_dir>/metrics.jsonl`.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.run.sections import ENDPOINT_FILE, METRICS_FILE

PROGRESS_PREFIXES = ("learner:", "actor ")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the learner binds it right after)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """Every update's metrics so far (one dict per update, cleanrl names), oldest first."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            continue
    return out


def read_endpoint(output_dir: str | Path) -> dict[str, Any] | None:
    """{"host", "port", "pid", "run_id", "version"} of the learner serving from output_dir, if up."""
    path = Path(output_dir) / ENDPOINT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class Proc:
    """One child process with a thread that copies its output to a log file and a line queue."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    lines: queue.Queue
    _thread: threading.Thread | None = None
    history: list[str] = field(default_factory=list)

    def _pump(self, stream: IO[str]) -> None:
        with open(self.log_path, "a") as log:
            for raw in stream:
                log.write(raw)
                log.flush()
                line = raw.rstrip("\n")
                self.history.append(line)
                if line.startswith(PROGRESS_PREFIXES):
                    self.lines.put((self.name, line))

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            self.popen.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


def spawn(
    name: str,
    command: str,
    config: str | Path,
    args: Sequence[str],
    log_dir: Path,
    lines: queue.Queue,
    env: dict[str, str] | None = None,
    ranks: int = 1,
) -> Proc:
    """`python -m app <command> --config <config> <args>` with its output followed (under torchrun with
    `ranks` > 1)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    popen = subprocess.Popen(
        [*launcher, "-m", "app", command, "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
        start_new_session=True,  # a Ctrl-C in the parent's terminal is the parent's to forward
    )
    proc = Proc(name, popen, log_dir / f"{name}.log", lines)
    proc._thread = threading.Thread(target=proc._pump, args=(popen.stdout,), daemon=True)
    proc._thread.start()
    return proc


class RunProcesses:
    """A learner and N actors on loopback; see the module docstring."""

    def __init__(
        self, config: str | Path, output_dir: str | Path, port: int, env: dict[str, str] | None = None
    ):
        self.config = Path(config)
        self.output_dir = Path(output_dir)
        self.port = port
        self.env = env
        self.queue: queue.Queue = queue.Queue()
        self.learner: Proc | None = None
        self.actors: list[Proc] = []
        self.seen: list[tuple[str, str]] = []  # every progress line `lines()` has handed out

    @classmethod
    def start(
        cls,
        config: str | Path,
        output_dir: str | Path,
        actors: int = 1,
        learner_args: Sequence[str] = (),
        actor_args: Sequence[str] = (),
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> RunProcesses:
        run = cls(config, output_dir, port or free_port(), env)
        run.start_learner(learner_args)
        for i in range(actors):
            run.start_actor([f"--actor.actor_id=actor{i}", *actor_args])
        return run

    def start_learner(self, args: Sequence[str] = (), ranks: int = 1) -> Proc:
        self.learner = spawn(
            "learner",
            "learner",
            self.config,
            [f"--transport.port={self.port}", f"--learner.output_dir={self.output_dir}", *args],
            self.output_dir / "logs",
            self.queue,
            self.env,
            ranks=ranks,
        )
        return self.learner

    def start_actor(self, args: Sequence[str] = ()) -> Proc:
        name = f"actor{len(self.actors)}"
        proc = spawn(
            name, "actor", self.config, [f"--transport.port={self.port}", *args], self.output_dir / "logs",
            self.queue, self.env,
        )  # fmt: skip
        self.actors.append(proc)
        return proc

    def lines(self, timeout: float | None = None) -> Iterator[tuple[str, str]]:
        """(process name, progress line) as they come; ends after `timeout` s or when all processes exit."""
        end = None if timeout is None else time.monotonic() + timeout
        while end is None or time.monotonic() < end:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                item = None
            if item is not None:
                self.seen.append(item)
                yield item
            else:
                if not any(p.alive for p in self.processes):
                    return

    def wait_for(
        self, predicate, timeout: float, what: str = "a progress line", seen: bool = False
    ) -> tuple[str, str]:
        """The first (name, line) with predicate(name, line) true; TimeoutError (with recent output) if none.
        `seen=True` also searches lines already handed out by earlier calls."""
        if seen:
            for name, line in list(self.seen):
                if predicate(name, line):
                    return name, line
        for name, line in self.lines(timeout):
            if predicate(name, line):
                return name, line
        raise TimeoutError(f"no {what} within {timeout} s; recent output:\n{self.tail()}")

    def tail(self, n: int = 15) -> str:
        parts = []
        for p in self.processes:
            parts.append(f"--- {p.name} (rc={p.popen.poll()}) ---")
            parts.extend(p.history[-n:])
        return "\n".join(parts)

    @property
    def processes(self) -> list[Proc]:
        return ([self.learner] if self.learner else []) + self.actors

    @property
    def finished(self) -> bool:
        return self.learner is not None and not self.learner.alive

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.output_dir)

    def stop(self, timeout: float = 20.0) -> None:
        """Clean stop: SIGINT the learner (it writes its final checkpoint), SIGTERM the actors; kill
        whatever has not exited after `timeout` s."""
        for p in self.processes:
            p.signal(signal.SIGINT if p is self.learner else signal.SIGTERM)
        for p in self.processes:
            if p.wait(timeout) is None:
                p.popen.kill()
                p.wait(5)
