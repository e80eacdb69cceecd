"""pirl: online PI-RL fine-tuning of flow-matching VLA policies on real robots, on LeRobot's runtime."""

__version__ = "0.1.0"
