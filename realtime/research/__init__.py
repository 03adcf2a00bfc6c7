"""Runners for the research commands (``mocap train``): progress, JSON logs, resume, workers, DDP."""
