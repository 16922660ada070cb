"""Options several commands share, declared once: `--config/-c`, `-v` after the command, counts > 0."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An argparse type: an integer > 0 (a limit of 0 or less would silently do nothing or everything)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def add_config(parser: argparse.ArgumentParser, *, required: bool = False, help: str | None = None) -> None:
    parser.add_argument("-c", "--config", required=required, metavar="FILE",
                        help=help or "the TOML configuration file")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """`-v` after the command too (`wandb-mirror status -v`); SUPPRESS keeps a `-v` given before it."""
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="more log output (-vv for debug)")
