"""The command line: parse, call one library function, print."""

from newsletter.cli.main import main

__all__ = ["main"]
