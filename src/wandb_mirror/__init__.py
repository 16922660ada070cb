"""wandb-mirror: a complete, verified, local copy of Weights & Biases data, with automation hooks."""

__version__ = "0.1.0"
