"""Runners for the research commands (``mocap eval``, ``mocap train``): progress, JSON, resume, workers, DDP."""
