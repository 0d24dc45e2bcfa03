"""Reading the lab's documents (topologies, scenarios, traces, manifests); a bad
file is an error naming it (and the line, for YAML that does not parse).
Field errors are :mod:`lab.model.errors`'s.

A document is read only when it is a regular file of at most
:data:`MAX_BYTES` (checked before reading: a FIFO, a device or a 50 MB file
is refused, never read), in UTF-8, nested at most :data:`MAX_DEPTH` deep.
YAML is read with a loader that refuses a key given twice in one mapping
(PyYAML keeps the last one silently) and aliases (``*name``: no lab document
needs them, and they can blow a small file up to billions of nodes).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from lab.safetext import excerpt

MAX_BYTES = 1 << 20  # 1 MiB: the seed topology is 2 KiB, a 256-node one ~40 KiB
MAX_DEPTH = 64  # mappings and lists inside each other


def read_document(path: Path, error: type[Exception], what: str = "file") -> str:
    """The text of ``path``; ``error`` (naming the file) when it is not a regular
    file, is larger than :data:`MAX_BYTES`, or is not UTF-8 text."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise error(f"{path}: cannot read {what}: {kind}")
        if st.st_size > MAX_BYTES:
            raise error(f"{path}: {what} is {st.st_size} bytes, more than the limit of "
                        f"{MAX_BYTES} ({MAX_BYTES >> 20} MiB)")
        try:
            data = os.read(fd, MAX_BYTES + 1)
        except OSError as exc:
            why = "a directory" if exc.errno == errno.EISDIR else exc.strerror or str(exc)
            raise error(f"{path}: cannot read {what}: {why}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise error(f"{path}: {what} is more than the limit of {MAX_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from None


def too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``data`` nests dicts and lists more than ``limit`` deep (no recursion)."""
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            todo.extend((v, depth + 1) for v in items)
    return False


class _LabLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, aliases and deep nesting."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in lab documents",
                event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # a scalar Python refuses (an int of 5,000 digits, the date 2001-13-45)
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {exc}", node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: the base class says so
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None,
                    f"duplicate key {excerpt(key)} (first at line {first.start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_PARSED: dict[str, Any] = {}  # document text -> its data: a process reads the same few
PARSED_KEPT = 64  # documents (a topology, traces) again and again (run --all, tests)


def _copy(data: Any) -> Any:
    """A copy of parsed YAML (mappings, lists, scalars) the caller may change."""
    if isinstance(data, dict):
        return {k: _copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_copy(v) for v in data]
    if isinstance(data, set):  # !!set: its members are hashable, never changed in place
        return set(data)
    return data  # str, int, float, bool, None, bytes, dates, !!omap's tuples: immutable


def parse_yaml(text: str, path: Path, error: type[ValueError]) -> Any:
    """The YAML document in ``text``; ``error`` names ``path`` and the line. A text
    parsed before in this process is not parsed again (a copy of its data is returned)."""
    if text in _PARSED:
        return _copy(_PARSED[text])
    data = _parse_yaml(text, path, error)
    if len(_PARSED) >= PARSED_KEPT:
        del _PARSED[next(iter(_PARSED))]
    _PARSED[text] = data
    return _copy(data)


def _parse_yaml(text: str, path: Path, error: type[ValueError]) -> Any:
    try:
        return yaml.load(text, Loader=_LabLoader)  # a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise error(f"{path}: {where}not valid YAML: {problem}".replace("\n", " ")) from None
    except RecursionError:
        raise error(f"{path}: nested too deeply") from None


def read_yaml(path: Path, error: type[ValueError]) -> Any:
    """The parsed document; ``error`` names the file (and the line for bad YAML). Every
    lab document is a mapping: a file with none (empty, only comments, ``null``) says so."""
    text = read_document(path, error)
    data = parse_yaml(text, path, error)
    if data is None:
        has_text = any(line.strip() and not line.lstrip().startswith("#")
                       for line in text.splitlines())
        what = "holds only null" if has_text else "is empty" + (
            " (only comments)" if text.strip() else "")
        raise error(f"{path}: the file {what}: expected a YAML mapping of keys")
    return data
