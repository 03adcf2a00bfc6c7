"""Runners for the research commands (``mocap eval``): progress, JSON, resumable results."""
