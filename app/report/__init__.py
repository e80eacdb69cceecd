"""What a person looks at besides the log lines: PNG plots (`plots.py`) and terminal progress bars
(`progress.py`) for the commands that run long (`pirl demo`, `pirl eval`, the benchmarks).

Nothing here knows about policies, robots or the runtime: callers hand over plain numbers, so a plot can
be drawn from a results JSON alone, and both modules import their heavy libraries (matplotlib, tqdm) only
when they draw, so a command that shows neither does not pay for them.
"""
