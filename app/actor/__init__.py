"""The robot-side process: observation -> policy -> safety -> robot, episodes, rollouts to the learner."""
