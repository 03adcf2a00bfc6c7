"""Metrics and the official SMPLer-X per-dataset evaluation rules (``main/test.py`` + each ``evaluate``)."""
