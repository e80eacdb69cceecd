"""Glue between pirl and LeRobot's gRPC `LearnerService`: channel/server options (keepalive, deadlines,
token, TLS) and the payload codec (raw-tensor parameter payloads, weights-only rollouts, JSON
interactions, LeRobot chunking).

No robot, policy or UI code here: both the learner and the actor import it.
"""
