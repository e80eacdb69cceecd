"""`pirl doctor`: tell a user, before a run, what this machine can and cannot do.

Every check returns a `Check` row; which rows are *required* depends on the target (sim demo, real
robot, learner box), so the exit code answers "can I run this config here?" rather than "is everything
installed?".
"""

from __future__ import annotations

import glob
import os
import platform
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import draccus

Target = Literal["sim", "real", "learner", "any"]


@dataclass
class DoctorConfig:
    # What you are about to run: "sim" (the demo), "real" (actor next to a robot), "learner" (GPU box),
    # or "any" (report only; only the Python stack is required).
    target: Target = "sim"
    # host:port of a running learner to test reachability (TCP connect). Required to succeed when given.
    learner_address: str | None = None
    # Fail when no CUDA device is present (for a learner that must train on a GPU).
    require_cuda: bool = False
    # Try to open each /dev/video* camera with OpenCV (slow on some machines); otherwise only list them.
    probe_cameras: bool = False
    # A run config (configs/*.json, what `pirl actor`/`pirl console --config` will read): check that it
    # parses, that its robot's and teleoperator's serial ports exist and that their calibration files are
    # where LeRobot will look. Nothing is connected or moved.
    config: str | None = None
    # Seconds allowed for the headless MuJoCo render check (it runs in a subprocess so a hang cannot
    # wedge the doctor).
    render_timeout_s: float = 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = False
    hint: str = ""


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks if c.required)


def check_python() -> Check:
    ok = sys.version_info >= (3, 12)
    return Check(
        "python", ok, platform.python_version(), True, "" if ok else "LeRobot 0.6.1 needs Python >= 3.12"
    )


def check_package(name: str, want: str | None = None) -> Check:
    from importlib import metadata

    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Check(name, False, "not installed", True, "run `make test` or `make demo` to create the venv")
    ok = want is None or version == want
    return Check(name, ok, version, True, "" if ok else f"expected {want}")


def check_mujoco_render(timeout_s: float) -> Check:
    """Render one small frame in a child process with MUJOCO_GL=egl (what the sim cameras use)."""
    code = (
        "import mujoco\n"
        'm = mujoco.MjModel.from_xml_string(\'<mujoco><worldbody><light pos="0 0 1"/>'
        '<geom type="sphere" size=".1"/></worldbody></mujoco>\')\n'
        "d = mujoco.MjData(m)\n"
        "r = mujoco.Renderer(m, 32, 32)\n"
        "mujoco.mj_forward(m, d); r.update_scene(d); img = r.render()\n"
        "print(mujoco.__version__, img.shape)\n"
    )
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        return Check(
            "mujoco render", False, f"timed out after {timeout_s:.0f}s", hint="install libegl1 / libgl1"
        )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return Check(
            "mujoco render", False, f"MUJOCO_GL={env['MUJOCO_GL']}: {last}", hint="apt install libegl1 libgl1"
        )
    return Check("mujoco render", True, f"MUJOCO_GL={env['MUJOCO_GL']} mujoco {out.stdout.strip()}")


def list_serial_ports() -> list[str]:
    """USB serial devices (the arms' bus adapters): pyserial's list plus macOS's /dev/tty.usbmodem*."""
    from serial.tools import list_ports

    ports = [p.device for p in list_ports.comports()]
    return sorted(ports + [p for p in glob.glob("/dev/tty.usbmodem*") if p not in ports])


def check_serial_ports() -> Check:
    try:
        ports = list_serial_ports()
    except Exception as exc:  # pyserial missing or broken
        return Check("serial ports", False, f"cannot list: {exc}")
    if not ports:
        return Check(
            "serial ports", False, "none found", hint="plug in the arm's USB bus adapter; `lerobot-find-port`"
        )
    return Check("serial ports", True, ", ".join(ports))


@dataclass
class PortAccess:
    """May this user open a serial port for reading and writing, and if not, what fixes it."""

    ok: bool
    detail: str
    hint: str = ""


def port_access(
    path: str, *, uid: int | None = None, gids: set[int] | None = None, user: str | None = None
) -> PortAccess:
    """Read+write permission on a serial device node for this user (or for `uid`/`gids`/`user`, in tests).

    On Linux the arms' ports (/dev/ttyACM*, /dev/ttyUSB*) belong to a group (`dialout`; `uucp` on some
    distributions) with mode 0660: a user outside that group cannot open them, and LeRobot then reports a
    bare "could not connect". A group added with `usermod` only counts after logging in again.
    """
    if not hasattr(os, "geteuid"):  # Windows: COM ports have no Unix permissions
        return PortAccess(True, f"{path}: permissions not checked on this OS")
    try:
        st = os.stat(path)
    except OSError as exc:
        return PortAccess(False, f"{path}: {exc.strerror or exc}", "plug it in; `lerobot-find-port` finds it")
    mine = uid is None
    uid = os.geteuid() if uid is None else uid
    gids = {os.getegid(), *os.getgroups()} if gids is None else set(gids)
    mode = stat.S_IMODE(st.st_mode)
    shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
    ok = uid == 0 or (mode >> shift) & 0o6 == 0o6
    if not ok and mine:
        ok = os.access(path, os.R_OK | os.W_OK)  # ACLs (e.g. systemd's uaccess) grant it too
    if ok:
        return PortAccess(True, f"{path}: read/write ok")
    group = _group_name(st.st_gid)
    detail = f"{path}: you may not read and write it (mode {mode:o}, group {group})"
    udev = "docs/calibration.md, 'Serial-port permissions'"
    if mode & 0o060 != 0o060:  # joining the group would not help
        return PortAccess(
            False, detail, f"a udev rule fixes it for good ({udev}); until unplugged: `sudo chmod 666 {path}`"
        )
    if (user or _user_name()) in _group_members(st.st_gid):
        hint = f"you are in group {group} since after this login: log out and back in (or `newgrp {group}`)"
    else:
        hint = f"`sudo usermod -aG {group} $USER`, then log out and back in (or a udev rule: {udev})"
    return PortAccess(False, detail, hint)


def _group_name(gid: int) -> str:
    try:
        import grp

        return grp.getgrgid(gid).gr_name
    except (ImportError, KeyError):
        return str(gid)


def _group_members(gid: int) -> list[str]:
    try:
        import grp

        return list(grp.getgrgid(gid).gr_mem)
    except (ImportError, KeyError):
        return []


def _user_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no login name (containers)
        return ""


def check_port_permissions(ports: list[str] | None = None) -> Check:
    """Every listed serial port readable and writable by this user (nothing is opened)."""
    if ports is None:
        try:
            ports = list_serial_ports()
        except Exception as exc:
            return Check("port permissions", False, f"cannot list ports: {exc}")
    if not ports:
        return Check("port permissions", True, "no serial ports to check")
    denied = [a for a in (port_access(p) for p in ports) if not a.ok]
    if not denied:
        return Check("port permissions", True, f"read/write ok: {', '.join(ports)}")
    return Check("port permissions", False, "; ".join(a.detail for a in denied), hint=denied[0].hint)


def check_cameras(probe: bool) -> Check:
    devices = sorted(glob.glob("/dev/video*"))
    if not devices:
        return Check(
            "cameras", False, "no /dev/video* devices", hint="plug in a camera; `lerobot-find-cameras`"
        )
    if not probe:
        return Check("cameras", True, ", ".join(devices) + " (not opened; --probe_cameras=true to open)")
    import cv2

    opened = []
    for dev in devices:
        cap = cv2.VideoCapture(dev)
        if cap.isOpened():
            opened.append(dev)
        cap.release()
    return Check("cameras", bool(opened), f"opened {len(opened)}/{len(devices)}: {', '.join(opened) or '-'}")


def check_cuda(required: bool) -> Check:
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            return Check("cuda", True, f"{torch.cuda.device_count()} device(s): {name}", required)
        return Check(
            "cuda", False, "not available (CPU only)", required, "a learner for pi0/pi05 needs a GPU"
        )
    except Exception as exc:
        return Check("cuda", False, f"torch error: {exc}", required)


def check_learner(address: str, timeout_s: float = 3.0) -> Check:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return Check(
            "learner", False, f"bad address {address!r}", True, "use host:port, e.g. 127.0.0.1:50051"
        )
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        return Check(
            "learner", False, f"{address}: {exc.strerror or exc}", True, "start `pirl learner` there first"
        )
    return Check("learner", True, f"{address} accepts connections", True)


def calibration_dir() -> Path:
    """Where LeRobot reads and writes calibration files (honours HF_LEROBOT_CALIBRATION / HF_HOME)."""
    from lerobot.utils.constants import HF_LEROBOT_CALIBRATION

    return Path(HF_LEROBOT_CALIBRATION)


def check_calibration(required: bool) -> Check:
    try:
        root = calibration_dir()
    except Exception as exc:
        return Check("calibration", False, f"cannot resolve: {exc}", required)
    files = sorted(root.glob("*/*/*.json")) if root.exists() else []
    names = [f"{f.parent.parent.name}/{f.parent.name}/{f.stem}" for f in files]
    detail = f"{root}: " + (", ".join(names) if names else "no files yet")
    return Check(
        "calibration", bool(files) or not required, detail, required, "" if files else "run `pirl calibrate`"
    )


def declared_types(path: str) -> dict[str, str]:
    """The `type` of each device section as the config file writes it.

    LeRobot 0.6.1 registers one config class under both "so100_follower" and "so101_follower" (and the
    same for the leaders), so a parsed config's `.type` says "so100_*" for an SO-101; messages and the
    commands suggested to the user use the type the user wrote."""
    try:
        from app.run.errors import read_config_file

        raw = read_config_file(path)
    except Exception:  # the parse itself reports a bad file
        return {}
    return {
        role: section["type"]
        for role in ("robot", "teleop")
        if isinstance(section := raw.get(role), dict) and isinstance(section.get("type"), str)
    }


def calibrate_command(role: str, device_type: str, cfg: object) -> str:
    cmd = f"pirl calibrate --{role}.type={device_type} --{role}.port={getattr(cfg, 'port', None) or '<port>'}"
    cmd += f" --{role}.id={getattr(cfg, 'id', None)}"
    calib_dir = getattr(cfg, "calibration_dir", None)
    return cmd + (f" --{role}.calibration_dir={calib_dir}" if calib_dir else "")


def check_run_config(path: str) -> list[Check]:
    """The devices a run config names, as the actor will build them (ports, ids, calibration files)."""
    try:
        from app.run.parse import parse_run_config

        run = parse_run_config(["--config", path])
        run.validate("actor")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any parse failure is the config's to fix
        detail = " ".join(str(exc).split())[:300]
        return [Check("run config", False, f"{path}: {detail}", True, "fix the config (see docs/recipes.md)")]
    checks = [Check("run config", True, path, True)]
    from hardware import factory

    declared = declared_types(path)
    devices = [("robot", run.robot, factory.make_robot)]
    teleop = getattr(run, "teleop", None)
    if teleop is not None and teleop.type != "sim_expert":
        devices.append(("teleop", teleop, factory.make_teleoperator))
    for role, dev_cfg, make in devices:
        kind = declared.get(role, dev_cfg.type)
        port = getattr(dev_cfg, "port", None)
        if not port:
            checks.append(Check(f"{role} ({kind})", True, "no serial port needed", True))
            continue
        if not os.path.exists(port):
            hint = f"plug it in, or fix {role}.port (`lerobot-find-port` finds it)"
            checks.append(Check(f"{role} port", False, f"{port} ({kind}) does not exist", True, hint))
        else:
            access = port_access(port)
            if access.ok:
                checks.append(Check(f"{role} port", True, f"{port} ({kind}), read/write ok", True))
            else:
                checks.append(Check(f"{role} port", False, access.detail, True, access.hint))
        checks.append(_calibration_row(role, kind, dev_cfg, make))
    return checks


def _calibration_row(role: str, kind: str, dev_cfg: object, make) -> Check:
    """The device's calibration file, where LeRobot will look for it (builds the device, never connects)."""
    name = f"{role} calibration"
    try:
        device = make(dev_cfg, require_calibration=False)
    except (ValueError, FileNotFoundError) as exc:  # a corrupt file, a config the factory refuses
        return Check(name, False, " ".join(str(exc).split()), True)
    fpath = device.calibration_fpath
    if fpath.is_file():
        return Check(name, True, str(fpath), True)
    return Check(
        name,
        False,
        f"no calibration file for {kind} id={getattr(dev_cfg, 'id', None)!r}: expected {fpath}",
        True,
        f"calibrate it first: `{calibrate_command(role, kind, dev_cfg)}`",
    )


def run_checks(cfg: DoctorConfig) -> Report:
    real = cfg.target == "real"
    report = Report()
    report.checks.append(check_python())
    report.checks.append(check_package("torch"))
    report.checks.append(check_package("lerobot", "0.6.1"))
    render = check_mujoco_render(cfg.render_timeout_s)
    render.required = cfg.target == "sim"
    report.checks.append(render)
    for check in (check_serial_ports(), check_port_permissions(), check_cameras(cfg.probe_cameras)):
        check.required = real
        report.checks.append(check)
    report.checks.append(check_cuda(cfg.require_cuda))
    if cfg.learner_address:
        report.checks.append(check_learner(cfg.learner_address))
    report.checks.append(check_calibration(real))
    if cfg.config:
        report.checks.extend(check_run_config(cfg.config))
    return report


def render_report(report: Report, target: str) -> str:
    """A plain-text table (readable without colour, over SSH, in logs)."""
    # Not rich's Table: in a pipe it wraps to 80 columns (splitting fix commands) and parses [..] as markup.
    rows = [("check", "status", "required", "detail")]
    for c in report.checks:
        status = "ok" if c.ok else ("FAIL" if c.required else "missing")
        detail = c.detail + (f"  -> {c.hint}" if c.hint and not c.ok else "")
        rows.append((c.name, status, "yes" if c.required else "no", detail))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 6)
    verdict = "ready" if report.ok else "NOT ready"
    lines.append("")
    lines.append(f"pirl doctor: {verdict} for target '{target}'")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    cfg = draccus.parse(config_class=DoctorConfig, args=argv)
    report = run_checks(cfg)
    print(render_report(report, cfg.target))
    return 0 if report.ok else 1
