"""The safety layer: every action, from the policy or a human, passes through here before the robot."""
