"""The built-in plugins of wandb-mirror (installed as the `wandb_mirror_plugins` package).

Each module is an ordinary plugin that uses only the public hook API (`wandb_mirror.hooks`),
exactly like a third-party one: export, best_run, cleanup, summary_backfill.
"""
