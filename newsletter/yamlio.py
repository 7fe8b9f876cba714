"""Safe YAML loading that remembers the line of every mapping key.

Errors must name the file and line of the offending field, which `yaml.safe_load` forgets.
Anchors and aliases (`&a` / `*a`) are refused before anything is built from them: a
600-byte "billion laughs" document expands to gigabytes (14 s, 1.9 GB in PyYAML), and no
setting or front-matter needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from newsletter.errors import NewsletterError

KeyPath = tuple[str, ...]


# libyaml's parser when PyYAML was built with it: 8x faster, which a 1,000-issue archive feels.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """Safe loading that leaves dates as text, so a bad date is reported with its line."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class LocatedYaml:
    data: Any
    lines: dict[KeyPath, int]  # key path -> 1-based line of the key in the file

    def line_of(self, *path: str, default: int | None = None) -> int | None:
        return self.lines.get(tuple(path), default)


def load_located(
    text: str,
    *,
    path: Path | str,
    first_line: int = 1,
    error: type[NewsletterError] = NewsletterError,
) -> LocatedYaml:
    """Parse one YAML document with SafeLoader; `first_line` offsets lines (front-matter)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _refuse_aliases(node, path, first_line, error)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = first_line + mark.line if mark else None
        problem = exc.problem or "malformed YAML"
        raise error(f"malformed YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise error(f"malformed YAML: {exc}", path=path, line=first_line) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {}
    if node is not None:
        duplicate = _collect_lines(node, (), lines, first_line)
        if duplicate is not None:
            key, line, first_seen = duplicate
            raise error(
                f"duplicate key (also on line {first_seen}); keep one", path=path, line=line,
                field=key,
            )  # fmt: skip
    return LocatedYaml(data, lines)


def _refuse_aliases(
    root: yaml.Node, path: Path | str, first_line: int, error: type[NewsletterError]
) -> None:
    """An alias makes the composed graph share a node: seeing one twice means an alias. The
    walk visits each distinct node once (no expansion), with a stack instead of recursion."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise error(
                "YAML anchors and aliases (&name, *name) are not allowed; write the value out",
                path=path,
                line=first_line + node.start_mark.line,
            )
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _collect_lines(
    node: yaml.Node, prefix: KeyPath, out: dict[KeyPath, int], first: int
) -> tuple[str, int, int] | None:
    """Record each key's line; return (key, line, earlier line) of the first duplicate key.

    PyYAML silently keeps the last of two equal keys, so `title:` twice would lose a title.
    """
    out.setdefault(prefix, first + node.start_mark.line)
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        key = str(key_node.value)
        keypath = (*prefix, key)
        line = first + key_node.start_mark.line
        if keypath in out:
            return ".".join(keypath), line, out[keypath]
        out[keypath] = line
        duplicate = _collect_lines(value_node, keypath, out, first)
        if duplicate is not None:
            return duplicate
    return None
