"""Robot-side parts: robot/camera/teleop factories, the simulated SO-101, safety, watchdogs, episodes."""
