"""Training: the official SMPLer-X train-mode forward and losses, optimiser and schedule."""
