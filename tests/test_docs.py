"""Documentation stays in step with the code: every command has an example and a README mention.

Walks the click group recursively, so commands added later by any area are covered too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from newsletter.cli.main import main

README = Path(__file__).resolve().parent.parent / "README.md"


def walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(("newsletter", *path)), command
    if isinstance(command, click.Group):
        # list_commands/get_command, not .commands: the top level loads its commands lazily
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            found = command.get_command(ctx, name)
            assert found is not None, name
            yield from walk(found, (*path, name))


COMMANDS = list(walk(main))
TOP_LEVEL = main.list_commands(click.Context(main))


def test_the_walk_finds_the_commands() -> None:
    names = [name for name, _ in COMMANDS]
    for expected in (
        "newsletter check",
        "newsletter build",
        "newsletter new",
        "newsletter preview",
    ):
        assert expected in names
    assert len(names) > len(TOP_LEVEL)  # groups are walked into


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_has_an_example(name: str, command: click.Command) -> None:
    with click.Context(command, info_name=name) as ctx:
        text = command.get_help(ctx)
    assert "Example" in text, f"{name} --help has no Example: block"
    # `\b` keeps the example's line breaks; without it click rewraps them into one line.
    example = text.split("Example", 1)[1]
    for line in example.splitlines():
        assert line.count("newsletter ") <= 1, f"{name}: examples run together: {line!r}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_top_level_command_is_in_the_readme(name: str) -> None:
    readme = README.read_text(encoding="utf-8")
    assert f"newsletter {name}" in readme or f"`{name}`" in readme, (
        f"README.md never mentions the `{name}` command"
    )


DOCS = README.parent / "docs"


def all_docs() -> str:
    return README.read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md"))
    )


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS if name != "newsletter"])
def test_every_command_appears_in_the_docs(name: str) -> None:
    text = all_docs()
    leaf = name.rsplit(" ", 1)[1]
    parent = name.rsplit(" ", 1)[0]
    # `newsletter subscribers show`, or the group's line listing `show` in backticks.
    assert name in text or (parent in text and f"`{leaf}`" in text), (
        f"neither README.md nor docs/*.md mentions `{name}`"
    )


def test_readme_is_short_and_links_every_topic() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    for topic in ("sending", "inbox", "archive", "web", "operations", "performance"):
        assert f"docs/{topic}.md" in readme and (DOCS / f"{topic}.md").exists()
