"""The real actor's recording section of its status (`ActorConsole.record_status`): the folder and count
while it records, the folder kept and the error once an error stopped the recording, nothing when it was
not asked to record."""

from __future__ import annotations

from app.actor.loop import Actor
from app.control.protocol import RecordStatus
from app.episode.record_config import ActorRecordConfig


def test_the_actor_reports_its_recording_folder_count_and_the_error_that_stopped_it(run_config, tmp_path):
    actor = Actor(run_config("--actor.control.port=0"), progress=lambda line: None)
    try:
        assert actor.console.record_status() == RecordStatus()  # not asked to record
        root = tmp_path / "episodes"
        actor.cfg.actor.record = ActorRecordConfig(root=str(root), images=False)
        actor._open_recording()  # a real LeRobotDataset in `root`, as `run()` opens it
        assert actor.runner.recorder is not None and (root / "meta" / "info.json").exists()
        assert actor.console.record_status() == RecordStatus(root=str(root), episodes=0, error="")

        def disk_full() -> None:
            raise OSError(28, "No space left on device")

        actor.runner.episodes_recorded = 2  # what two saved episodes leave (test_record.py runs them)
        actor.runner._record(disk_full)  # how every recorder call goes: the error stops the recording
        assert actor.runner.recorder is None
        got = actor.console.record_status()
        assert got == RecordStatus(str(root), 2, "OSError: [Errno 28] No space left on device")
        assert actor.console.status().record == got  # what the console is sent
    finally:
        actor._close_recording()
        actor.client.close()
