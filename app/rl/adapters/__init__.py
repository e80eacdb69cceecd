"""FlowPolicy adapters for LeRobot's VLAs (SmolVLA, pi0, pi0.5) and offline builders for them.

See docs/vla_adapters.md. Import the adapters from their modules (`app.rl.adapters.smolvla`,
`app.rl.adapters.pi0`); this package import stays light (no LeRobot/transformers import).
"""
