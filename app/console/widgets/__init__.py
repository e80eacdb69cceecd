"""One widget per file; each panel renders one part of an `ActorStatus`."""

from app.console.widgets.actor_exited import ActorExitedScreen
from app.console.widgets.camera import CameraPanel
from app.console.widgets.confirm import ConfirmScreen
from app.console.widgets.curves import CurvesPanel
from app.console.widgets.episode import EpisodePanel
from app.console.widgets.help import HelpScreen
from app.console.widgets.joints import JointsPanel
from app.console.widgets.learner_link import LearnerLinkPanel
from app.console.widgets.log_pane import LogPane
from app.console.widgets.loop_health import LoopHealthPanel
from app.console.widgets.status_bar import StatusBar

__all__ = [
    "ActorExitedScreen",
    "CameraPanel",
    "ConfirmScreen",
    "CurvesPanel",
    "EpisodePanel",
    "HelpScreen",
    "JointsPanel",
    "LearnerLinkPanel",
    "LogPane",
    "LoopHealthPanel",
    "StatusBar",
]
