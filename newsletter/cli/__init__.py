"""The command line: parse, call one library function, print."""

from newsletter.startup import loading

with loading():  # click and the command group: what every command, `--help` too, loads first
    from newsletter.cli.main import main

__all__ = ["main"]
