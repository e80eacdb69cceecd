"""Fault-injection campaign: a PI-RL learner and an actor on the simulated SO-101 over loopback, broken on
purpose again and again, and checked after each fault (docs/runtime.md, "Fault campaign").

    .venv/bin/python benchmarks/faults.py --quick          # a small subset, < 3 min on the 2-core VM
    .venv/bin/python benchmarks/faults.py --learner_kills 12 --actor_kills 4 --link_losses 4

Checks (each prints `check <name>: tries T passes P`; all go to benchmarks/results/faults.json):

- config_errors: the bad config / option cases of tests/app/run/test_config_errors.py through the real
  front end in-process (one line, exit 2, nothing built), plus one `pirl learner` process on a missing file;
- hostile_rollouts: every kind of bad rollout (benchmarks/hostile.py) sent to the running learner process
  is refused INVALID_ARGUMENT, and the learner keeps training;
- learner_kill: SIGKILL of the learner at a random moment or inside a checkpoint save (its `.tmp-*` folder
  seen), restart with --learner.resume=true: it resumes the newest finished checkpoint, the weights
  digest it reports is that checkpoint's, the weights it then serves hash to it, and training goes on;
- actor_kill: SIGKILL of the actor, a new one started: it gets weights and its episodes are trained;
- link_blackhole / link_sigstop: the actor's link is cut silently (a TCP proxy between actor and learner
  that stops forwarding, benchmarks/netfaults.py, or SIGSTOP of the learner): the actor must say "learner link down" (it holds)
  within safety.link_timeout_s + 1.5 s (the hold latency is measured from the actor's log) and train
  again once the link is back;
- damaged_checkpoint: on copies of the run folder, the newest checkpoint damaged (truncated, pickled, meta
  key missing, ...): a learner resumed on it (in this process) skips it with one warning and resumes the
  one before; all damaged: `pirl learner`'s front end ends with one line, exit 2;
- accounting (once, at the end): every rollout the learner accepted (its spool files, watched) was trained
  exactly once: the chunks of the surviving update lineage in metrics.jsonl plus those still spooled
  equal the accepted chunks, and every accepted episode is in the final checkpoint's de-duplication window.

Everything is bounded: counts, per-step timeouts and --max_s of wall time; the campaign stops by itself
and stops every process it started.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # first: site-packages may hold an unrelated `tests` package

from app.run.launch import Proc, RunProcesses, free_port, read_metrics, spawn  # noqa: E402
from benchmarks.common import machine_line, markdown_table, report  # noqa: E402
from benchmarks.netfaults import BlackHoleProxy  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "faults.json"
LINK_TIMEOUT_S = 1.0  # safety.link_timeout_s of the campaign's actor
HOLD_SLACK_S = 1.5  # allowed on top of it (one heartbeat period, scheduling on a loaded 2-core VM)
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MUJOCO_GL": "egl"}


# ------------------------------------------------------------------------------------------ results


@dataclass
class Check:
    name: str
    tries: int = 0
    passes: int = 0
    notes: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def record(self, ok: bool, note: str = "") -> bool:
        self.tries += 1
        self.passes += int(ok)
        if note:
            self.notes.append(("ok: " if ok else "FAIL: ") + note)
        print(f"  {self.name} #{self.tries}: {'pass' if ok else 'FAIL'} {note}", flush=True)
        return ok

    def value(self, key: str, v: float) -> None:
        self.values.setdefault(key, []).append(round(v, 3))

    def line(self) -> str:
        return f"check {self.name}: tries {self.tries} passes {self.passes}"


# ---------------------------------------------------------------------------------------- the run


def tiny_config(path: Path) -> Path:
    """configs/sim_pirl_reach.json shrunk: a 32-wide policy, 1 s episodes, an update per 12 chunks, a
    checkpoint per update, no staleness drops (the accounting counts every chunk), a 1 s link timeout."""
    cfg = json.loads((REPO / "configs" / "sim_pirl_reach.json").read_text())
    cfg["policy"]["native"].update({"obs_hidden": 32, "expert_hidden": 32, "time_embed_dim": 8})
    rl = cfg["policy"]["rl"]
    rl.update({"value_hidden": [32], "noise": {"hidden": [16]}, "ppo": {"epochs": 1, "minibatch_size": 32}})
    cfg["algorithm"].update({"chunks_per_update": 12, "drop_episode_after_versions": 1_000_000})
    cfg["episode"]["time_limit_s"] = 1.0
    cfg["safety"]["link_timeout_s"] = LINK_TIMEOUT_S
    cfg["learner"].update({"save_every": 1, "keep_checkpoints": 3, "tensorboard": False, "torch_threads": 1})
    cfg["actor"].update({"torch_threads": 1})
    cfg["transport"].update(
        {"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "keepalive_s": 2.0, "keepalive_timeout_s": 2.0}
    )
    path.write_text(json.dumps(cfg, indent=1))
    return path


_WATCHER = r"""
import ctypes, os, select, struct, sys, time
spool, dest = sys.argv[1], sys.argv[2]
os.makedirs(spool, exist_ok=True)
os.makedirs(dest, exist_ok=True)
linked, n = set(), 0  # inodes linked (a linked inode cannot be reused while our link holds it)

def grab(name):
    global n
    if not name.endswith(".rollout") or name.startswith("."):
        return
    src = os.path.join(spool, name)
    try:
        ino = os.stat(src).st_ino
        if ino in linked:
            return
        os.link(src, os.path.join(dest, "%06d-%s" % (n, name)))
    except FileNotFoundError:
        return
    linked.add(ino)
    n += 1

libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
if fd >= 0:
    libc.inotify_add_watch(fd, spool.encode(), 0x80 | 0x100)  # IN_MOVED_TO | IN_CREATE
open(os.path.join(dest, ".ready"), "w").close()
last_scan = 0.0
while True:
    if fd >= 0 and select.select([fd], [], [], 0.2)[0]:
        buf, i = os.read(fd, 65536), 0
        while i + 16 <= len(buf):
            length = struct.unpack_from("iIII", buf, i)[3]
            grab(buf[i + 16 : i + 16 + length].rstrip(b"\0").decode(errors="replace"))
            i += 16 + length
    elif fd < 0:
        time.sleep(0.005)
    if time.monotonic() - last_scan > (0.5 if fd >= 0 else 0.0):  # a backstop for missed events
        for name in os.listdir(spool):
            grab(name)
        last_scan = time.monotonic()
"""


class SpoolWatch:
    """Keeps every rollout file that appears in the learner's spool (an accepted rollout is stored there
    before it is acknowledged, and stays until a checkpoint holds its update): a separate small process
    hard-links each new file into `dest` the moment inotify reports it (a thread of this process could
    stall for seconds behind an import holding the GIL while the learner trains and deletes files)."""

    def __init__(self, spool: Path, dest: Path) -> None:
        self.spool, self.dest = spool, dest
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCHER, str(spool), str(dest)])
        end = time.monotonic() + 30
        while not (dest / ".ready").exists():
            if time.monotonic() > end or self.proc.poll() is not None:
                raise RuntimeError(f"the spool watcher did not start (rc {self.proc.poll()})")
            time.sleep(0.01)

    def stop(self) -> None:
        time.sleep(0.3)  # the last events
        self.proc.terminate()
        self.proc.wait(10)

    @property
    def accepted(self) -> dict[tuple[str, int], int]:
        """(actor session, episode) -> chunks of every rollout the learner stored."""
        from app.transport.codec import decode_rollout

        out = {}
        for f in sorted(self.dest.glob("*.rollout")):
            r = decode_rollout(f.read_bytes())
            out[r.key] = int(r.batch["reward"].shape[0])
        return out


def wait_for_created(folder: Path, prefix: str, timeout: float) -> bool:
    """Block until an entry named `prefix...` is created in `folder` (inotify: no busy polling that would
    steal a core from the learner); False after `timeout` s."""
    import ctypes
    import select
    import struct

    folder.mkdir(parents=True, exist_ok=True)  # (the learner creates it at its first save)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    if fd < 0:  # no inotify: poll
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(n.startswith(prefix) for n in os.listdir(folder)):
                return True
            time.sleep(0.002)
        return False
    try:
        in_create, in_moved_to = 0x100, 0x80
        if libc.inotify_add_watch(fd, str(folder).encode(), in_create | in_moved_to) < 0:
            return False
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return False
            buf = os.read(fd, 65536)
            i = 0
            while i + 16 <= len(buf):
                _wd, _mask, _cookie, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16 : i + 16 + length].rstrip(b"\0").decode(errors="replace")
                i += 16 + length
                if name.startswith(prefix):
                    return True
        return False
    finally:
        os.close(fd)


def wait_line(
    proc: Proc, pred: Callable[[str], bool], timeout: float, start: int = 0
) -> tuple[str | None, float, int]:
    """(first line of proc's output from index `start` with pred(line), monotonic time it was seen, its
    index + 1); (None, now, len) after `timeout` s or when the process ended without one."""
    end = time.monotonic() + timeout
    i = start
    while True:
        hist = proc.history
        while i < len(hist):
            line = hist[i]
            i += 1
            if pred(line):
                return line, time.monotonic(), i
        if time.monotonic() > end or (not proc.alive and i >= len(proc.history)):
            return None, time.monotonic(), i
        time.sleep(0.005)


UPDATE_RE = re.compile(r"^learner: update (\d+) v(\d+) ")
RESUMED_RE = re.compile(r"^learner: resumed (\S+) policy v(\d+) updates (\d+) \(weights ([0-9a-f]+)\)")
SERVING_RE = re.compile(r"^learner: serving on \S+ run \S+ policy v(\d+)")


class Campaign:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.out = work / "run"
        self.config = tiny_config(work / "tiny.json")
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.max_s
        self.rng = random.Random(args.seed)
        self.checks: dict[str, Check] = {}
        self.run = RunProcesses(self.config, self.out, free_port(), env=ENV)
        self.proxy: BlackHoleProxy | None = None
        self.watch: SpoolWatch | None = None
        self.actor: Proc | None = None
        self.actor_n = 0
        self.learner_mark = 0  # index in the learner's output where the current incarnation starts
        self.skipped: list[str] = []  # faults not started: the time bound (--max_s) was reached

    def phase(self, what: str) -> None:
        print(f"== [{time.monotonic() - self.t0:5.1f} s] {what}", flush=True)

    def check(self, name: str) -> Check:
        return self.checks.setdefault(name, Check(name))

    def left(self) -> float:
        return self.deadline - time.monotonic()

    # ---------------------------------------------------------------------------------- processes

    @property
    def learner(self) -> Proc:
        assert self.run.learner is not None
        return self.run.learner

    def start_learner(self, resume: bool) -> tuple[str | None, str | None]:
        """(the resumed line or None, the serving line or None)."""
        self.run.start_learner([f"--learner.resume={str(resume).lower()}"])
        self.learner_mark = 0
        resumed = None
        if resume:
            resumed, _, _ = wait_line(self.learner, RESUMED_RE.match, 60)
        serving, _, _ = wait_line(self.learner, SERVING_RE.match, 60)
        return resumed, serving

    def start_actor(self) -> Proc:
        assert self.proxy is not None
        name = f"actor{self.actor_n}"
        self.actor_n += 1
        self.actor = spawn(
            name, "actor", self.config,
            [f"--transport.port={self.proxy.port}", "--actor.actor_id=sim0", "--actor.sample_seed=" + str(self.actor_n)],
            self.out / "logs", self.run.queue, ENV,
        )  # fmt: skip
        self.run.actors.append(self.actor)
        return self.actor

    def updates_seen(self) -> int:
        """The newest update number the current learner printed."""
        best = 0
        for line in self.learner.history[self.learner_mark :]:
            m = UPDATE_RE.match(line)
            if m:
                best = max(best, int(m.group(1)))
        return best

    def wait_update_after(self, n: int, timeout: float) -> bool:
        line, _, _ = wait_line(
            self.learner,
            lambda ln: bool(UPDATE_RE.match(ln)) and int(UPDATE_RE.match(ln).group(1)) > n,
            timeout,
        )
        return line is not None

    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.start_learner(resume=False)
        self.proxy = BlackHoleProxy(self.run.port)
        self.watch = SpoolWatch(self.out / "spool", self.work / "accepted")
        self.start_actor()
        first_ckpt, _, _ = wait_line(self.learner, lambda ln: ln.startswith("learner: checkpoint "), 120)
        if first_ckpt is None:
            raise RuntimeError(f"the run did not reach its first checkpoint:\n{self.run.tail()}")

    def stop(self) -> int | None:
        """Clean stop (the learner writes its final checkpoint); its return code."""
        self.run.stop(timeout=30)
        if self.proxy is not None:
            self.proxy.close()
        if self.watch is not None and self.watch.proc.poll() is None:
            self.watch.stop()
        return self.learner.popen.returncode if self.run.learner else None

    # ------------------------------------------------------------------------------------ checks

    def config_errors(self, quick: bool) -> None:
        c = self.check("config_errors")
        try:
            from tests.app.run.test_config_errors import CASES
        except ImportError as err:  # pytest or the tests folder missing: a handful of our own
            print(f"  (test_config_errors not importable: {err}; using a handful of cases)")
            CASES = _fallback_cases()  # noqa: N806
        from app.run.process import run_role

        cases = CASES[:: max(1, len(CASES) // 6)] if quick else CASES
        cwd = os.getcwd()
        os.chdir(REPO)
        saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for case_id, role, make_argv, expected in cases:
                tmp = Path(tempfile.mkdtemp(dir=self.work))
                err = io.StringIO()
                built: list[bool] = []

                def never(cfg, shutdown, built=built):
                    built.append(True)
                    raise SystemExit(99)

                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    try:
                        rc = run_role(make_argv(tmp), role, "faults", lambda a: 98, never)
                    except SystemExit as exc:
                        rc = exc.code
                lines = err.getvalue().strip().splitlines()
                ok = (
                    rc == 2
                    and not built
                    and "Traceback" not in err.getvalue()
                    and len(lines) >= 1
                    and all(e in lines[-1] for e in expected)
                )
                c.record(ok, f"{case_id}: rc {rc}, {lines[-1][:100] if lines else 'no output'}")
        finally:
            os.chdir(cwd)
            for s, h in saved.items():
                signal.signal(s, h)
        if quick:
            return
        # one real process: what a user sees
        p = subprocess.run(
            [sys.executable, "-m", "app", "learner", "--config", str(self.work / "missing.json")],
            capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, **ENV},
        )  # fmt: skip
        err_lines = p.stderr.strip().splitlines()
        c.record(
            p.returncode == 2 and len(err_lines) == 1 and "missing.json not found" in p.stderr,
            f"process: rc {p.returncode}, {err_lines[-1][:100] if err_lines else ''}",
        )

    def hostile_rollouts(self, wait_update: bool = True) -> None:
        import grpc
        from lerobot.transport import services_pb2_grpc

        from app.run.parse import parse_run_config
        from app.transport.channel import make_channel
        from app.transport.config import TransportConfig
        from benchmarks.hostile import hostile_messages

        c = self.check("hostile_rollouts")
        cfg = parse_run_config(["--config", str(self.config)])
        policy = cfg.make_policy()
        before = self.updates_seen()
        tcfg = TransportConfig(port=self.run.port, ready_timeout_s=1.0, send_timeout_s=5.0)
        for kind, (method, messages) in hostile_messages(policy).items():
            ch = make_channel(tcfg)
            try:
                getattr(services_pb2_grpc.LearnerServiceStub(ch), method)(iter(messages), timeout=20)
                code, details = grpc.StatusCode.OK, "accepted"
            except grpc.RpcError as err:
                code, details = err.code(), err.details() or ""
            finally:
                ch.close()
            c.record(code == grpc.StatusCode.INVALID_ARGUMENT, f"{kind}: {code.name} {details[:90]}")
        if wait_update:  # (--quick: the faults that follow show it)
            ok = self.wait_update_after(before, 60) and self.learner.alive
            c.record(ok, "the learner trains on after them")

    def learner_kill(self, mode: str) -> None:
        from app.learner.checkpoint import META_FILE, CheckpointManager

        c = self.check("learner_kill")
        ckpts = self.out / "checkpoints"
        caught = False
        if mode == "in_save":  # wait for a save in progress (its temporary folder), then a few ms into it
            caught = wait_for_created(ckpts, ".tmp-", 30)
            time.sleep(self.rng.uniform(0.0, 0.01))
        else:
            time.sleep(self.rng.uniform(0.0, 2.5))
        assert self.actor is not None
        actor_mark = len(self.actor.history)
        os.kill(self.learner.popen.pid, signal.SIGKILL)
        self.learner.wait(10)
        t_kill = time.monotonic()
        # the newest finished checkpoint by version: what resume must take (LAST may still name the one
        # before, when the kill came between a save's rename and its LAST update)
        done = [p for p in CheckpointManager(ckpts).candidates() if (p / META_FILE).is_file()]
        newest = done[0] if done else None
        meta = json.loads((newest / META_FILE).read_text()) if newest else None
        resumed, serving = self.start_learner(resume=newest is not None)
        notes = [f"{mode}{' (save caught)' if caught else ''}"]
        ok = serving is not None
        if newest is not None and meta is not None:
            m = RESUMED_RE.match(resumed or "")
            ok = ok and m is not None
            if m:
                ok = ok and Path(m.group(1)).name == newest.name and m.group(4) == meta["weights_digest"]
                ok = ok and int(m.group(3)) == meta["updates"]
                notes.append(f"resumed {newest.name} digest {m.group(4)}")
                served = self._served_digest(int(SERVING_RE.match(serving).group(1)) if serving else -1)
                if served is not None:
                    ok = ok and served == meta["weights_digest"]
                    notes.append(
                        "served weights match" if served == meta["weights_digest"] else "SERVED DIFFER"
                    )
        base = int(meta["updates"]) if meta else 0
        back, _, _ = wait_line(self.actor, lambda ln: "learner link back" in ln, 90, actor_mark)
        if back is None:
            notes.append("THE ACTOR DID NOT RECONNECT")
        trained = back is not None and self.wait_update_after(max(base, self.updates_seen()), 90)
        c.value("restart_to_next_update_s", time.monotonic() - t_kill)
        ok = ok and trained and self.actor is not None and self.actor.alive
        if mode == "in_save":
            self.check("learner_kill_in_save_caught").record(
                caught, "a .tmp- folder was seen before the kill"
            )
        c.record(ok, ", ".join(notes) + ("" if trained else ", NO UPDATE AFTER RESUME"))

    def _served_digest(self, version: int) -> str | None:
        """Digest of the weights the learner serves, if still the resumed version (None: moved on)."""
        from app.actor.client import LearnerClient
        from app.rl.digests import weights_digest
        from app.transport.config import TransportConfig

        cfg = TransportConfig(
            port=self.run.port, ready_timeout_s=2.0, backoff_initial_s=0.1, backoff_max_s=0.5
        )
        with LearnerClient(cfg, "faults-probe") as client:
            params = client.wait_for_parameters(15)
            if params is None or params.version != version:
                return None
            return weights_digest(params.state)

    def actor_kill(self) -> None:
        c = self.check("actor_kill")
        assert self.actor is not None
        time.sleep(self.rng.uniform(0.0, 1.5))
        os.kill(self.actor.popen.pid, signal.SIGKILL)
        self.actor.wait(10)
        before = self.updates_seen()
        t0 = time.monotonic()
        actor = self.start_actor()
        first, _, _ = wait_line(actor, lambda ln: "first chunk with policy" in ln, 90)
        ok = first is not None and self.wait_update_after(before, 90) and self.learner.alive
        c.value("restart_to_next_update_s", time.monotonic() - t0)
        c.record(ok, (first or "no first chunk")[:100])

    def link_loss(self, how: str) -> None:
        c = self.check(f"link_{how}")
        assert self.actor is not None and self.proxy is not None
        wait_line(self.actor, lambda ln: "first chunk" in ln, 60)
        mark = len(self.actor.history)
        t0 = time.monotonic()
        if how == "blackhole":
            self.proxy.freeze()
        else:
            os.kill(self.learner.popen.pid, signal.SIGSTOP)
        try:
            down, t_down, mark2 = wait_line(
                self.actor, lambda ln: "learner link down" in ln, LINK_TIMEOUT_S + 15, mark
            )
            latency = t_down - t0
            time.sleep(0.5)  # held: the arm stays where it is
        finally:
            if how == "blackhole":
                self.proxy.thaw()
            else:
                os.kill(self.learner.popen.pid, signal.SIGCONT)
            t_resume = time.monotonic()
        before = self.updates_seen()
        back, t_back, _ = wait_line(self.actor, lambda ln: "learner link back" in ln, 60, mark2)
        trained = self.wait_update_after(before, 90)
        ok = down is not None and latency <= LINK_TIMEOUT_S + HOLD_SLACK_S and back is not None and trained
        if down is not None:
            c.value("hold_latency_s", latency)
        if back is not None:
            c.value("link_back_s", t_back - t_resume)  # from the thaw / SIGCONT to "learner link back"
        c.record(
            ok,
            f"hold after {latency:.2f} s" if down else f"no 'link down' within {LINK_TIMEOUT_S + 15:.0f} s"
            + ("" if back else ", no 'link back'") + ("" if trained else ", no update after"),
        )  # fmt: skip

    def damaged_checkpoints(self, kinds: list[str]) -> None:
        """On copies of the run folder (after the clean stop): damage the newest checkpoint and resume (the
        learner's own code, in this process: `Learner(cfg)` with resume); all damaged: `pirl learner`'s
        front end must end with one line and exit 2."""
        import logging

        from app.learner.checkpoint import CheckpointManager
        from app.learner.cli import _build_pirl
        from app.learner.loop import Learner
        from app.run.parse import parse_run_config
        from app.run.process import run_role

        c = self.check("damaged_checkpoint")
        marker = Path("/tmp/pirl-faults-unpickled")
        marker.unlink(missing_ok=True)
        for kind in kinds:
            work = self.work / f"damaged-{kind.replace(' ', '_')}"
            shutil.copytree(self.out, work, ignore=shutil.ignore_patterns("logs", "spool"))
            ckpts = work / "checkpoints"
            found = CheckpointManager(ckpts).candidates()
            if len(found) < 2:
                c.record(False, f"{kind}: fewer than 2 checkpoints to work with")
                continue
            for target in found if kind == "all" else found[:1]:
                if kind == "all" and not (target / "state.pt").is_file():
                    continue  # a folder a kill left half-deleted (older pirl): damaged already
                DAMAGE["truncated" if kind == "all" else kind](target)
            argv = ["--config", str(self.config), f"--learner.output_dir={work}", "--learner.resume=true",
                    "--transport.port=0", "--learner.progress=false"]  # fmt: skip
            if kind == "all":
                err = io.StringIO()
                saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                        rc = run_role(argv, "learner", "faults", lambda a: 98, _build_pirl)
                finally:
                    for s, h in saved.items():
                        signal.signal(s, h)
                lines = [ln for ln in err.getvalue().splitlines() if ln.startswith("pirl learner:")]
                ok = rc == 2 and "Traceback" not in err.getvalue() and len(lines) == 1
                ok = ok and lines[0].startswith("pirl learner: no intact checkpoint in")
                c.record(ok, f"all damaged: rc {rc}, {lines[-1][:110] if lines else err.getvalue()[-110:]}")
                continue
            said: list[str] = []
            handler = logging.Handler(logging.WARNING)
            handler.emit = lambda record, said=said: said.append(record.getMessage())  # type: ignore[method-assign]
            logger = logging.getLogger("pirl.learner.checkpoint")
            logger.addHandler(handler)
            lines: list[str] = []
            try:
                learner = Learner(parse_run_config(argv), progress=lines.append)
                resumed = next((ln for ln in lines if ln.startswith("learner: resumed")), "")
                error = ""
                del learner
            except Exception as exc:  # noqa: BLE001 - a traceback here is the failure being looked for
                resumed, error = "", f"{type(exc).__name__}: {exc}"
            finally:
                logger.removeHandler(handler)
            sign = "LAST names" if kind == "LAST missing" else f"skipped checkpoint {found[0].name}:"
            warned = [w for w in said if sign in w]
            ok = len(warned) == 1 and f"/{found[1].name} " in resumed and not error and not marker.exists()
            c.record(ok, f"{kind}: {(warned[0] if warned else error or 'no warning')[:120]}")

    def accounting(self) -> None:
        """Every accepted rollout trained exactly once (see the module docstring)."""
        import torch

        from app.learner.checkpoint import STATE_FILE, CheckpointManager

        c = self.check("accounting")
        assert self.watch is not None
        if self.watch.proc.poll() is None:
            self.watch.stop()
        accepted = self.watch.accepted
        final = CheckpointManager(self.out / "checkpoints").latest()
        assert final is not None
        meta = json.loads((final / "meta.json").read_text())
        lineage: dict[int, dict[str, Any]] = {}
        for m in read_metrics(self.out):
            if m["update"] <= meta["updates"]:
                lineage[m["update"]] = m  # a later incarnation's line for the same update replaces it
        missing_updates = [u for u in range(1, meta["updates"] + 1) if u not in lineage]
        trained = sum(int(m.get("rl/chunks", 0)) for m in lineage.values())
        dropped = (
            max((m.get("charts/dropped_stale_episodes", 0) or 0) for m in lineage.values()) if lineage else 0
        )
        from app.transport.codec import decode_rollout

        remaining = 0
        for f in sorted((self.out / "spool").glob("*.rollout")):
            remaining += int(decode_rollout(f.read_bytes()).batch["reward"].shape[0])
        state = torch.load(final / STATE_FILE, weights_only=True)
        window = {(str(a), int(e)) for a, e, _ in state.get("service", {}).get("seen", [])}
        lost = [k for k in accepted if k not in window]
        unseen = len(window - set(accepted))  # accepted by the learner but missed by the watch (then the sums
        # cannot agree; reported so that a watch miss is not mistaken for a double training)
        total = sum(accepted.values())
        ok = not missing_updates and trained + remaining == total and not lost and dropped == 0
        c.value("accepted_episodes", len(accepted))
        c.value("accepted_chunks", total)
        c.value("trained_chunks", trained)
        c.value("spooled_chunks_at_end", remaining)
        # what kills (inside saves, prunes, LAST writes) left behind: gone after the clean stop's save
        litter = sorted(
            p.name
            for p in (self.out / "checkpoints").iterdir()
            if p.name != "LAST" and not (p.is_dir() and (p / "meta.json").is_file())
        )
        kept = CheckpointManager(self.out / "checkpoints").finished()
        self.check("checkpoint_litter").record(
            not litter and len(kept) <= 3, f"{len(kept)} checkpoints kept, left over: {litter[:5]}"
        )
        c.record(
            ok,
            f"{len(accepted)} episodes / {total} chunks accepted; trained {trained} in {len(lineage)} updates "
            f"+ {remaining} still spooled; {len(lost)} not in the final window, {unseen} only there; "
            f"missing update lines {missing_updates[:5]}; stale drops {dropped}",
        )


# ------------------------------------------------------------------------------- checkpoint damage


def _truncate(p: Path) -> None:
    data = (p / "state.pt").read_bytes()
    (p / "state.pt").write_bytes(data[: len(data) // 2])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/pirl-faults-unpickled",))


def _pickled(p: Path) -> None:
    import torch

    state = torch.load(p / "state.pt", weights_only=True)
    state["evil"] = _Evil()
    torch.save(state, p / "state.pt")


def _meta_key_missing(p: Path) -> None:
    meta = json.loads((p / "meta.json").read_text())
    meta.pop("updates")
    (p / "meta.json").write_text(json.dumps(meta))


def _wrong_digest(p: Path) -> None:
    meta = json.loads((p / "meta.json").read_text())
    meta["weights_digest"] = "0" * 16
    (p / "meta.json").write_text(json.dumps(meta))


def _last_missing(p: Path) -> None:  # LAST names a folder that is gone; the newest folder is gone too
    (p.parent / "LAST").write_text("999999\n")
    shutil.rmtree(p)


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "empty": lambda p: (p / "state.pt").write_bytes(b""),
    "garbage": lambda p: (p / "state.pt").write_bytes(os.urandom(4096)),
    "pickled": _pickled,
    "wrong digest": _wrong_digest,
    "meta key missing": _meta_key_missing,
    "LAST missing": _last_missing,
}


def _fallback_cases() -> list:
    def write(t: Path, name: str, text: str) -> str:
        (t / name).write_text(text)
        return str(t / name)

    recipe = "configs/sim_pirl_reach.json"
    return [
        ("malformed_json", "learner", lambda t: ["--config", write(t, "bad.json", '{"policy": {')], ["bad.json"]),
        ("empty_file", "learner", lambda t: ["--config", write(t, "empty.json", "")], ["empty.json"]),
        ("missing_file", "actor", lambda t: ["--config", str(t / "nope.json")], ["nope.json not found"]),
        ("misspelt_option", "learner", lambda t: ["--config", recipe, "--learner.max_update=5"],
         ["did you mean --learner.max_updates?"]),
        ("negative_lr", "learner", lambda t: ["--config", recipe, "--policy.rl.optim.actor_lr=-1"], ["actor_lr"]),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="a small subset (< 3 min on the 2-core VM)")
    ap.add_argument("--learner_kills", type=int, default=8)
    ap.add_argument("--actor_kills", type=int, default=3)
    ap.add_argument("--link_losses", type=int, default=3, help="of each kind (black hole, SIGSTOP)")
    ap.add_argument(
        "--damage", default=",".join([*DAMAGE, "all"]), help="checkpoint damage kinds, comma-separated"
    )
    ap.add_argument("--skip", default="", help="checks to skip: config,hostile,learner,actor,link,damage")
    ap.add_argument(
        "--max_s", type=float, default=1200.0, help="wall-time bound of the fault loop (then: skipped)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--workdir", type=Path, default=None, help="keep the run folder here (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.learner_kills, args.actor_kills, args.link_losses = 1, 1, 1
        args.damage = "pickled,all"
        args.max_s = min(args.max_s, 150.0)
    if min(args.learner_kills, args.actor_kills, args.link_losses) < 0 or args.max_s <= 0:
        ap.error("counts must be >= 0 and --max_s > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.monotonic()
    owned_tmp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="pirl-faults-")) if owned_tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    camp = Campaign(args, work)
    stopped_rc: int | None = None
    error = ""
    try:
        camp.phase("starting the run (learner + actor through a proxy, sim SO-101, loopback)")
        camp.start()
        if "hostile" not in skip and camp.left() > 20:
            camp.phase("hostile rollouts")
            camp.hostile_rollouts(wait_update=not args.quick)
        plan: list[tuple[str, Any]] = []
        if "learner" not in skip:
            plan += [("learner", "in_save" if i % 2 == 0 else "random") for i in range(args.learner_kills)]
        if "actor" not in skip:
            plan += [("actor", None)] * args.actor_kills
        if "link" not in skip:
            plan += [("link", "blackhole"), ("link", "sigstop")] * args.link_losses
        if args.quick:  # the cheap ones first: all of them fit the time bound on a loaded 2-core VM
            plan.sort(key=lambda item: {"link": 0, "learner": 1, "actor": 2}[item[0]])
        else:
            camp.rng.shuffle(plan)
        for what, mode in plan:
            if camp.left() < 25:
                camp.phase(f"time bound reached: skipped {what} {mode or ''}")
                camp.skipped.append(f"{what} {mode or ''}".strip())
                continue
            camp.phase(f"{what} {mode or ''}")
            if what == "learner":
                camp.learner_kill(mode)
            elif what == "actor":
                camp.actor_kill()
            else:
                camp.link_loss(mode)
    except Exception as err:  # noqa: BLE001 - report what was measured, then fail
        error = f"{type(err).__name__}: {err}"
        print(f"campaign error: {error}", flush=True)
    finally:
        stopped_rc = camp.stop()
    if "config" not in skip:
        camp.phase("config errors")
        try:
            camp.config_errors(args.quick)
        except Exception as err:  # noqa: BLE001
            camp.check("config_errors").record(False, f"{type(err).__name__}: {err}")
    if not error:
        if stopped_rc != 0:
            camp.check("clean_stop").record(False, f"learner rc {stopped_rc}")
        try:
            camp.accounting()
        except Exception as err:  # noqa: BLE001
            camp.check("accounting").record(False, f"{type(err).__name__}: {err}")
        kinds = [k for k in args.damage.split(",") if k]
        if "damage" not in skip and kinds:
            camp.phase("damaged checkpoints")
            try:
                camp.damaged_checkpoints(kinds)
            except Exception as err:  # noqa: BLE001
                camp.check("damaged_checkpoint").record(False, f"{type(err).__name__}: {err}")
    wall = time.monotonic() - t_start
    rows = []
    for c in camp.checks.values():
        print(c.line(), flush=True)
        vals = "; ".join(
            f"{k} {min(v):g}..{max(v):g} (n {len(v)})" if len(v) > 1 else f"{k} {v[0]:g}"
            for k, v in c.values.items()
        )
        rows.append([c.name, c.tries, c.passes, vals])
    all_ok = not error and all(c.passes == c.tries for c in camp.checks.values())
    print()
    notes = f"wall {wall:.0f} s" + (
        f"; skipped (time bound): {', '.join(camp.skipped)}" if camp.skipped else ""
    )
    print(report("Fault campaign", ["check", "tries", "passes", "measured"], rows, notes))
    result = {
        "command": " ".join(
            [".venv/bin/python", "benchmarks/faults.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "quick": args.quick,
        "wall_s": round(wall, 1),
        "error": error,
        "all_passed": all_ok,
        "skipped": camp.skipped,
        "checks": {n: c.__dict__ for n, c in camp.checks.items()},
        "table": markdown_table(["check", "tries", "passes", "measured"], rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    if owned_tmp and all_ok:
        shutil.rmtree(work, ignore_errors=True)
    elif not all_ok:
        print(f"run folder kept for inspection: {work}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
