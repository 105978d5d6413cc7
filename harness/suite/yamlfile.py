"""Reading a suite's YAML within limits: `safe_load` semantics (no Python object is ever
constructed) plus what safe_load lets through.

    raw = read_yaml(Path("suites/kernels.yaml"))   # a dict, or UserError (exit 2) naming file:line:col

Refused, each with `file:line:col: ...` and what is allowed:
- a file over MAX_FILE_BYTES (read no further than that: a FIFO or /dev/zero cannot hang it);
- a duplicate key in any mapping, at any depth (YAML says keys are unique; PyYAML keeps the last);
- nesting deeper than MAX_DEPTH (PyYAML's composer recurses: deep input would end in RecursionError);
- aliases that expand past MAX_NODES values, and recursive aliases. PyYAML shares an aliased node
  instead of copying it, so a "billion laughs" file loads in microseconds, but everything after
  (pydantic, json, the matrix) walks it expanded. The expanded size is counted on the composed node
  graph, each distinct node once (memoised), before anything is constructed.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.core.errors import UserError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the shipped suites are 1-3 KiB; thousands of experiments fit
MAX_DEPTH = 32  # a suite nests 6 levels (experiments[i].model_args.arch[j][k])
MAX_NODES = 100_000  # values after alias expansion; the shipped suites have a few hundred

MERGE_TAG = "tag:yaml.org,2002:merge"


class _Limited(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than MAX_DEPTH."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(self.peek_event().start_mark,
                               f"nested deeper than {MAX_DEPTH} levels; a suite needs about 6")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    def __init__(self, mark, message: str):
        self.mark, self.message = mark, message


def read_yaml(path: Path) -> object:
    """The YAML document in `path` (None when empty), within the limits above."""
    if not path.exists():
        raise UserError(f"{path}: no such file (suites live in suites/, e.g. suites/kernels.yaml)")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a suite file, e.g. {path / 'kernels.yaml'}")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise UserError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB, the most a suite file may be; "
                        f"a big study is a few experiments and a `matrix:`")
    return load_text(text, str(path))


def load_text(text: str, where: str, marks: bool = True) -> object:
    """The YAML document in `text` (None when empty), within the limits above; errors start with
    `where` (followed by :line:col when `marks`)."""
    def at(mark) -> str:
        return f"{where}:{mark.line + 1}:{mark.column + 1}" if mark and marks else where

    loader = _Limited(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    except _Refused as e:
        raise UserError(f"{at(e.mark)}: {e.message}") from None
    except yaml.constructor.ConstructorError as e:
        raise UserError(f"{at(e.problem_mark)}: YAML tags that construct objects are not allowed "
                        f"({e.problem})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{at(getattr(e, 'problem_mark', None))}: not valid YAML: "
                        f"{getattr(e, 'problem', None) or e}") from None
    finally:
        loader.dispose()


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_graph(root: Node) -> None:
    """Duplicate keys, recursive aliases and the expanded size, in one walk over the distinct
    nodes (iterative: depth is bounded already, but the walk need not rely on it)."""
    size: dict[int, int] = {}  # id(node) -> values under it, aliases expanded
    open_: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_NODES:
                raise _Refused(node.start_mark, f"expands to more than {MAX_NODES:,} values through its "
                               f"aliases (*name); a suite may have at most {MAX_NODES:,}")
            continue
        if key in size:
            continue
        if key in open_:
            raise _Refused(node.start_mark, "a recursive alias (a value that contains itself) is not allowed")
        open_.add(key)
        if isinstance(node, MappingNode):
            _check_duplicates(node)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)) if id(c) not in size)


def _check_duplicates(node: MappingNode) -> None:
    first: dict[object, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue  # `<<: *base` may be overridden by design; complex keys are left to the schema
        try:
            # constructed, so "1" and "0x1" are one int key; a fresh constructor keeps no cache
            key = yaml.constructor.SafeConstructor().construct_object(key_node) \
                if key_node.tag.startswith("tag:yaml.org,2002:") else (key_node.tag, key_node.value)
            hash(key)
        except (yaml.YAMLError, TypeError):
            key = (key_node.tag, key_node.value)
        if key in first:
            raise _Refused(key_node.start_mark, f"duplicate key {key_node.value!r} (first at line "
                           f"{first[key].start_mark.line + 1}); a key may appear once per mapping")
        first[key] = key_node
