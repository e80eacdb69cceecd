"""What every runtime process shares: the run config (learner, actor and the other sections), the
registry of config choices, parsing, the process front end, the launcher and the SAC hand-off.

Neutral ground: the learner and the actor both import from here and never from each other.
"""
