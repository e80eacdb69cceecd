"""The learner process: LeRobot's LearnerService for PI-RL, on-policy batching, updates, weight push,
checkpoints; and the delegation to LeRobot's own SAC learner."""
