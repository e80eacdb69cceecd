"""PI-RL in pure torch: no robot, gRPC or UI import may appear anywhere under `app/rl/`.

Modules (one job each; docs/algorithm.md maps the equations to them): `policy` (the FlowPolicy
interface), `native` (a small native flow policy), `adapters/` (SmolVLA, pi0, pi0.5), `heads` (noise and
value heads), `model` (PIRLModel: policy + heads + trainable split), `lora`, `config` (PIRLConfig),
`sampling` (Flow-Noise / Flow-SDE / ODE samplers and chain re-scoring), `batch` (RolloutBatch,
ChunkRecord), `gae`, `losses` (PPO, value, GRPO, flow matching), `trainer` (PIRLTrainer), `bc`
(behaviour-cloning pre-training), `lerobot_policy` (the registered LeRobot policy type "pirl_flow").
"""
