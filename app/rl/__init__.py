"""PI-RL in pure torch: no robot, gRPC or UI import may appear anywhere under `app/rl/`."""
