"""Typed PI-RL configuration (draccus-friendly dataclasses).

Every option a recipe may touch lives here with a comment saying what it does; defaults are the
reference's (docs/algorithm.md says what each one computes) unless a comment says why we differ. The config is nested inside the
LeRobot policy config (`lerobot_policy.PIRLFlowConfig.rl`) so a checkpoint carries the exact algorithm
settings it was trained with.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from app.rl.config_robot_minute import AnchorConfig, AWRConfig, CriticPretrainConfig, ReplayConfig


def as_tuple(value: Any, cast: Callable[[Any], Any]) -> tuple:
    """A tuple option from a tuple/list, or from the string a JSON-mode draccus override leaves when the
    value is not strict JSON (`--rl.trainable=[expert,value_head]` arrives as that literal string, or
    already split into its characters by draccus's tuple decoder)."""
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, str) and len(v) == 1 for v in value):
        joined = "".join(value)
        if joined[0] in "[(":
            value = joined
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = [v.strip().strip("'\"") for v in text.strip("[]()").split(",") if v.strip()]
        if isinstance(value, (str, int, float)):
            value = [value]
    return tuple(cast(v) for v in value)


Method = Literal["flow_noise", "flow_sde"]
Algorithm = Literal["ppo", "grpo"]
LogprobReduce = Literal["sum", "mean"]


@dataclass
class FlowNoiseConfig:
    """Flow-Noise: every denoising step is Gaussian with a learned, bounded std."""

    # Bounds of the learned per-element std (in the model's normalised action space).
    std_min: float = 0.08
    std_max: float = 0.16
    # Hidden widths of the noise-head MLP (tanh activations, as the reference).
    hidden: tuple[int, ...] = (128, 64)
    # Entropy bonus coefficient on the chain's Gaussian entropy (per step, the sum of 0.5*log(2*pi*e*sigma^2)
    # over the executed slice), aggregated over the steps exactly like the log-prob (logprob_reduce,
    # include_prior: the prior adds the constant entropy of N(0, I) and, with "mean", one to the divisor).
    entropy_coef: float = 0.005


@dataclass
class FlowSDEConfig:
    """Flow-SDE: the ODE turned into its marginal-preserving reverse SDE."""

    # Noise level a in sigma_t = a * sqrt(t / (1 - t)); the first step's std equals a.
    noise_level: float = 0.5
    # Hybrid ODE-SDE sampling during training: one random step per chain is stochastic, the rest are
    # deterministic ODE steps. False makes every step stochastic (log-prob still uses the stored step only
    # if hybrid; with hybrid=False the whole chain is scored, like Flow-Noise with a fixed sigma).
    hybrid: bool = True


@dataclass
class PPOConfig:
    """Clipped-surrogate PPO over chunks (cleanrl-style), with a value head."""

    clip_coef: float = 0.2  # ratio clip epsilon
    # Value clipping around the rollout value (None disables it).
    value_clip: float | None = 0.2
    # Huber delta of the value loss (None uses plain 0.5*MSE).
    huber_delta: float | None = 10.0
    value_coef: float = 1.0  # weight of the value loss in the total loss
    epochs: int = 2  # passes over a rollout batch per update
    minibatch_size: int = 256  # chunks per gradient step (clamped to the batch size)
    normalize_advantages: bool = True  # normalise GAE advantages over the batch's policy rows (not GRPO's)
    max_grad_norm: float = 1.0  # global grad-norm clip (0 disables)
    # Stop the epoch loop early when approx-KL exceeds this (None: never). Not in the reference.
    target_kl: float | None = None
    # Recompute V(obs) with the current critic before GAE (True), or trust the rollout's stored values.
    recompute_values: bool = True
    # The first N updates train only the value head (the policy loss is skipped): a fresh critic's
    # advantages are noise, and acting on them undoes behaviour cloning. 0 disables it.
    critic_warmup_updates: int = 0


@dataclass
class GAEConfig:
    """Generalised advantage estimation at chunk level."""

    gamma: float = 0.99  # discount per chunk
    lam: float = 0.95  # GAE lambda
    # A truncated episode (time limit, an operator's stop) is bootstrapped with V(last observation) when
    # True (the reference: the limit is an artifact of training). False ends it like a failure (V_next = 0):
    # right when the time limit is part of the task, as in the sim demo, whose evaluation uses the same
    # limit. The critic cannot see the clock, so with a per-chunk gamma of 0.99 a time-out state
    # bootstraps from itself with a gain of up to 1/(1 - gamma); measured on the demo, V drifted to 10 on
    # a task whose returns are at most 1 and the policy collapsed (docs/demo.md, "Tuning study").
    bootstrap_truncated: bool = True


@dataclass
class GRPOConfig:
    """Group-relative advantages (no critic): G rollouts from the same reset state."""

    # Advantage = (R - mean_G) / (std_G + eps), with R the episode return, broadcast to its chunks.
    eps: float = 1e-6
    # Drop groups whose returns are all equal (all success or all failure): they carry no signal.
    drop_uniform_groups: bool = True


@dataclass
class StalenessConfig:
    """Rules for chunks produced by an older policy version (async actor/learner)."""

    # Chunks with (current_version - policy_version) > max_staleness are kept for GAE/critic but masked
    # out of the policy loss.
    max_staleness: int = 1
    # Decoupled PPO (proximal policy interpolated between behaviour and current, importance weights).
    decoupled: bool = False
    # With decoupled PPO, mask samples whose weight pi_prox / pi_behaviour exceeds this.
    max_behaviour_weight: float = 2.0


@dataclass
class InterventionConfig:
    """Human takeover: masked from the PPO ratio; optionally teaches the policy by BC."""

    # Weight of the flow-matching BC loss on human-driven chunks (0 disables it).
    bc_coef: float = 0.0
    # Reward penalty added to the chunk where a takeover began (0 disables it; use a positive number).
    takeover_penalty: float = 0.0


@dataclass
class OptimConfig:
    """AdamW with a separate learning rate for the value head."""

    actor_lr: float = 5e-6  # action expert, noise head and other trainable policy groups
    value_lr: float = 1e-4  # value head
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    weight_decay: float = 0.0


@dataclass
class PIRLConfig:
    """Everything PI-RL needs beyond the flow policy itself."""

    method: Method = "flow_noise"  # "flow_noise" | "flow_sde"
    algorithm: Algorithm = "ppo"  # "ppo" (critic + GAE) | "grpo" (group-relative, no critic)
    num_steps: int = 4  # K denoising steps per chain
    # Actions executed per chunk (H_exec); only [:exec_horizon, :action_dim] enters log-probs.
    # None executes (and scores) the whole chunk.
    exec_horizon: int | None = 5
    # How per-step Gaussian log-densities combine into one chunk log-prob (elements are always summed):
    # "sum" is the true joint density of the chain; "mean" averages over the step terms (the reference).
    logprob_reduce: LogprobReduce = "mean"
    # Include the prior term log N(x_0; 0, I) (the reference does). It does not depend on the parameters,
    # so it only shifts the reported log-prob and, with "mean", adds one term to the average (K+1 terms);
    # the Flow-Noise entropy gets the matching constant term and the same divisor.
    include_prior: bool = True
    # Parameter groups that train: names from FlowPolicy.parameter_groups() plus "noise_head" and
    # "value_head". Everything else is frozen.
    trainable: tuple[str, ...] = ("expert", "noise_head", "value_head")
    # Hidden widths of the value-head MLP.
    value_hidden: tuple[int, ...] = (256, 128)
    # Detach the value head's input features so the critic never moves the shared encoder.
    value_detach_features: bool = True
    noise: FlowNoiseConfig = field(default_factory=FlowNoiseConfig)
    sde: FlowSDEConfig = field(default_factory=FlowSDEConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    gae: GAEConfig = field(default_factory=GAEConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    staleness: StalenessConfig = field(default_factory=StalenessConfig)
    intervention: InterventionConfig = field(default_factory=InterventionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Robot-minute additions (app/rl/config_robot_minute.py; all off by default, docs/algorithm.md).
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    critic_pretrain: CriticPretrainConfig = field(default_factory=CriticPretrainConfig)
    awr: AWRConfig = field(default_factory=AWRConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    # >0: train only noise_head + value_head + the last N expert layers (overrides `trainable`; applied by
    # PIRLTrainer, app/rl/layers.py). 0: `trainable` decides.
    trainable_expert_layers: int = 0

    def __post_init__(self) -> None:
        if self.method not in ("flow_noise", "flow_sde"):
            raise ValueError(f"rl.method must be 'flow_noise' or 'flow_sde', got {self.method!r}")
        if self.algorithm not in ("ppo", "grpo"):
            raise ValueError(f"rl.algorithm must be 'ppo' or 'grpo', got {self.algorithm!r}")
        if self.logprob_reduce not in ("sum", "mean"):
            raise ValueError(f"rl.logprob_reduce must be 'sum' or 'mean', got {self.logprob_reduce!r}")
        if self.num_steps < 1:
            raise ValueError(f"rl.num_steps must be >= 1, got {self.num_steps}")
        if self.exec_horizon is not None and self.exec_horizon < 1:
            raise ValueError(f"rl.exec_horizon must be >= 1 or null, got {self.exec_horizon}")
        if not 0 < self.noise.std_min <= self.noise.std_max:
            raise ValueError(
                f"rl.noise needs 0 < std_min <= std_max, got {self.noise.std_min}, {self.noise.std_max}"
            )
        if self.sde.noise_level <= 0:
            raise ValueError(f"rl.sde.noise_level must be > 0, got {self.sde.noise_level}")
        self.trainable = as_tuple(self.trainable, str)
        self.value_hidden = as_tuple(self.value_hidden, int)
        self.noise.hidden = as_tuple(self.noise.hidden, int)

    def validate(self, prefix: str = "policy.rl") -> None:
        """Refuse every out-of-range value (NaN included), naming the option by its full dotted path
        (`prefix` is where this config sits: `policy.rl` in a run config). Called before anything is built."""
        import math

        def number(name: str, value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{prefix}.{name} must be a finite number, got {value!r}")
            return float(value)

        def check(name: str, value: Any, ok: Callable[[float], bool], rule: str) -> None:
            if value is None:
                raise ValueError(f"{prefix}.{name} must be {rule}, got null")
            if not ok(number(name, value)):
                raise ValueError(f"{prefix}.{name} must be {rule}, got {value!r}")

        def positive(name: str, value: Any, optional: bool = False) -> None:
            if not (optional and value is None):
                check(name, value, lambda v: v > 0, "> 0" + (" (or null to disable)" if optional else ""))

        def non_negative(name: str, value: Any, what: str = "") -> None:
            check(name, value, lambda v: v >= 0, ">= 0" + what)

        def integer(name: str, value: Any, low: int, what: str = "") -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{prefix}.{name} must be an integer >= {low}{what}, got {value!r}")

        if self.method not in ("flow_noise", "flow_sde"):
            raise ValueError(f"{prefix}.method must be 'flow_noise' or 'flow_sde', got {self.method!r}")
        if self.algorithm not in ("ppo", "grpo"):
            raise ValueError(f"{prefix}.algorithm must be 'ppo' or 'grpo', got {self.algorithm!r}")
        if self.logprob_reduce not in ("sum", "mean"):
            raise ValueError(f"{prefix}.logprob_reduce must be 'sum' or 'mean', got {self.logprob_reduce!r}")
        integer("num_steps", self.num_steps, 1, " (K denoising steps)")
        if self.exec_horizon is not None:
            integer("exec_horizon", self.exec_horizon, 1, " or null (the whole chunk)")
        if not self.trainable and not self.trainable_expert_layers:
            raise ValueError(
                f"{prefix}.trainable must name at least one parameter group, e.g. [expert, value_head]"
            )
        for name, widths in (("value_hidden", self.value_hidden), ("noise.hidden", self.noise.hidden)):
            if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
                raise ValueError(f"{prefix}.{name} must be layer widths >= 1, got {list(widths)}")
        integer("trainable_expert_layers", self.trainable_expert_layers, 0, " (0: `trainable` decides)")
        # Flow-Noise / Flow-SDE
        positive("noise.std_min", self.noise.std_min)
        check("noise.std_max", self.noise.std_max, lambda v: v >= self.noise.std_min, ">= noise.std_min")
        non_negative("noise.entropy_coef", self.noise.entropy_coef)
        positive("sde.noise_level", self.sde.noise_level)
        # PPO
        check("ppo.clip_coef", self.ppo.clip_coef, lambda v: 0 < v < 1, "in (0, 1) (the ratio clip epsilon)")
        positive("ppo.value_clip", self.ppo.value_clip, optional=True)
        positive("ppo.huber_delta", self.ppo.huber_delta, optional=True)
        non_negative("ppo.value_coef", self.ppo.value_coef)
        integer("ppo.epochs", self.ppo.epochs, 1)
        integer("ppo.minibatch_size", self.ppo.minibatch_size, 1)
        non_negative("ppo.max_grad_norm", self.ppo.max_grad_norm, " (0 disables the clip)")
        positive("ppo.target_kl", self.ppo.target_kl, optional=True)
        integer("ppo.critic_warmup_updates", self.ppo.critic_warmup_updates, 0)
        # advantages
        check("gae.gamma", self.gae.gamma, lambda v: 0 <= v <= 1, "in [0, 1] (discount per chunk)")
        check("gae.lam", self.gae.lam, lambda v: 0 <= v <= 1, "in [0, 1] (GAE lambda)")
        positive("grpo.eps", self.grpo.eps)
        # staleness, takeovers
        integer("staleness.max_staleness", self.staleness.max_staleness, 0)
        check(
            "staleness.max_behaviour_weight",
            self.staleness.max_behaviour_weight,
            lambda v: v >= 1,
            ">= 1 (on-policy samples have weight 1)",
        )
        non_negative("intervention.bc_coef", self.intervention.bc_coef, " (0 disables it)")
        non_negative(
            "intervention.takeover_penalty", self.intervention.takeover_penalty, " (a penalty: 0 or more)"
        )
        # optimiser
        positive("optim.actor_lr", self.optim.actor_lr)
        positive("optim.value_lr", self.optim.value_lr)
        betas = tuple(self.optim.betas)
        if len(betas) != 2:
            raise ValueError(f"{prefix}.optim.betas must be two numbers [beta1, beta2], got {list(betas)}")
        for i, beta in enumerate(betas):
            check(f"optim.betas[{i}]", beta, lambda v: 0 <= v < 1, "in [0, 1)")
        positive("optim.eps", self.optim.eps)
        non_negative("optim.weight_decay", self.optim.weight_decay)
