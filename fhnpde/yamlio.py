"""The one YAML reader of the project: safe, strict and bounded.

Case files, ``--set`` values, sweep files and surrogate configs are written by users, and
anything in them must end as a validated object or one line of error, never a hang or a
traceback. PyYAML's ``SafeLoader`` builds only plain data, but by itself it

- accepts a key given twice in one mapping (the later value silently wins);
- composes nodes recursively, so about a thousand nested ``[`` exhaust Python's recursion
  limit (a ``RecursionError`` thousands of lines long);
- shares an anchored node between its aliases, so 600 bytes of nested aliases (the
  "billion laughs") load instantly as a value of 10^9 items that hangs whatever walks it
  (validation, an error message quoting it, a deep copy);
- reads whatever a caller hands it, however large.

:class:`Loader` refuses each of these with a :class:`YAMLLimitError` that carries the line
and column: duplicate keys; nesting deeper than :data:`MAX_DEPTH`; a document whose
expansion (every alias counted as the whole node it stands for) has more than
:data:`MAX_NODES` nodes, counted while composing with each node's expanded size memoised,
so the count costs one addition per node or alias; an alias inside the node it names (a
recursive structure); integers longer than :data:`MAX_INT_CHARS` characters (Python refuses
to convert more than 4,300 digits, and base-60 integers cost quadratic time).
:data:`MAX_BYTES` bounds what the file readers read (:func:`fhnpde.case.read_case_data`).

It also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_INT_CHARS", "MAX_NODES", "Loader", "YAMLLimitError",
           "describe_error", "load"]

MAX_BYTES = 1 << 20  # 1 MiB: the shipped files are below 2 kB
MAX_DEPTH = 50  # nested nodes; the schemas need 5 and Python's recursion limit is ~1000 frames
MAX_NODES = 100_000  # nodes of the expanded document; the shipped files have below 200
MAX_INT_CHARS = 100  # characters of one integer scalar
PROBLEM_CHARS = 160  # characters of PyYAML's own description of a syntax error

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLLimitError(yaml.MarkedYAMLError):
    """Valid YAML that this project refuses: a duplicate key, too deep, too large."""


class Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and bounds depth, expansion and integers."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # nodes of the expanded document composed so far
        self._open_anchors: set[str] = set()  # anchors of the nodes being composed

    def _count(self, nodes: int, mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YAMLLimitError(
                None, None,
                f"the document expands to more than {MAX_NODES:,} values (counting every "
                "alias as the whole node it repeats); write the values out or use fewer "
                "aliases", mark,
            )

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise YAMLLimitError(
                    None, None,
                    f"the alias *{_short(event.anchor)} lies inside the node it names (a "
                    "recursive structure); remove it", event.start_mark,
                )
            node = super().compose_node(parent, index)  # refuses an undefined alias
            self._count(getattr(node, "expanded_size", 1), event.start_mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YAMLLimitError(
                None, None,
                f"values nest deeper than {MAX_DEPTH} levels; a case needs about 5",
                event.start_mark,
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        before = self._expanded
        self._count(1, event.start_mark)
        node = super().compose_node(parent, index)
        node.expanded_size = self._expanded - before
        if anchor is not None:
            self._open_anchors.discard(anchor)
        self._depth -= 1
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            first: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue  # "<<: *base" then a key overrides base's: that is intended
                key = self.construct_object(key_node, deep=deep)
                try:
                    seen = first.get(key)
                except TypeError:
                    continue  # an unhashable key: SafeConstructor refuses it with its mark
                if seen is not None:
                    raise YAMLLimitError(
                        None, None,
                        f"duplicate key {_short(repr(key))} (first given at line "
                        f"{seen.line + 1}); keep one of them", key_node.start_mark,
                    )
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INT_CHARS:
            raise YAMLLimitError(
                None, None,
                f"an integer of {len(node.value):,} characters is longer than the "
                f"{MAX_INT_CHARS} this reader accepts", node.start_mark,
            )
        return super().construct_yaml_int(node)


Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load(text: str) -> Any:
    """Parse one YAML document with :class:`Loader`; :class:`yaml.YAMLError` on any problem."""
    return yaml.load(text, Loader=Loader)  # a SafeLoader subclass


def _short(text: str, limit: int = 60) -> str:
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(exc: yaml.YAMLError) -> str:
    """One line saying where and what is wrong, without quoting more than a few words."""
    if isinstance(exc, yaml.reader.ReaderError):
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return (f"character {char!r} at position {exc.position} is not allowed in YAML; "
                "remove it or save the file as plain UTF-8 text")
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    if isinstance(exc, YAMLLimitError):
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context = getattr(exc, "context", None) or ""
    if context.startswith("found duplicate anchor"):
        first = getattr(exc, "context_mark", None)
        return (f"line {mark.line + 1}, column {mark.column + 1}: an anchor is defined twice "
                f"(first at line {first.line + 1}); rename one")
    if isinstance(exc, ConstructorError) and problem and "unhashable" in problem:
        problem = "a key must be a plain value, not a list or mapping"
    return f"not valid YAML{where}: {_short(problem or 'invalid YAML', PROBLEM_CHARS)}"
