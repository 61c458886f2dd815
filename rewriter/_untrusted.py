"""Values read from files and the command line, bounded before anything walks or formats them.

A few hundred bytes can describe a structure far too large to walk: a pickled list that holds itself nine
times, twelve levels deep (9**12 items when walked), or YAML anchors whose aliases expand exponentially.
``plain_fault`` walks a value with a budget (depth, items visited with shared references counted each time
they are reached, text length, integer size) and stops at the first excess; ``load_yaml`` counts the nodes
of a YAML document, aliases expanded, before building any Python object; ``shown`` formats any value in a
bounded number of characters.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping
from typing import Any

import yaml

MAX_DEPTH = 32  # levels of nesting in a file's fields (a recipe needs 4)
MAX_ITEMS = 100_000  # values visited in one file's fields, a shared one counted each time it is reached
MAX_TEXT = 1 << 16  # characters of one string
MAX_INT_BITS = 64  # an integer in a file or an argument (a 5000-digit one cannot even be printed)


def plain_fault(value: Any, *, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> str | None:
    """The first way ``value`` exceeds the bounds (one clause), or None; a walk that stops at the excess.

    Example:
        >>> bomb = []
        >>> for _ in range(12):
        ...     bomb = [bomb] * 9
        >>> plain_fault(bomb)
        'holds more than 100000 values (shared ones counted each time they are reached)'
    """
    too_many = f"holds more than {max_items} values (shared ones counted each time they are reached)"
    return _walk_fault(value, _children, _leaf_fault, too_many, max_items=max_items, max_depth=max_depth)


def _walk_fault(
    root: Any,
    children: Callable[[Any], list[Any]],
    leaf_fault: Callable[[Any], str | None],
    too_many: str,
    *,
    max_items: int,
    max_depth: int,
) -> str | None:
    """The first bound a depth-first walk from ``root`` exceeds (``too_many`` when it visits more than
    ``max_items``), or None; what the values are (Python objects, YAML nodes) is ``children``' and
    ``leaf_fault``'s business."""
    stack = [(root, 0)]
    visited = 0
    while stack:
        item, depth = stack.pop()
        visited += 1
        if visited > max_items:
            return too_many
        if depth > max_depth:
            return f"is nested deeper than {max_depth} levels"
        fault = leaf_fault(item)
        if fault:
            return fault
        below = children(item)
        if len(below) > max_items:
            return f"holds a collection of {len(below)} values, more than {max_items}"
        stack.extend((child, depth + 1) for child in below)
    return None


def _leaf_fault(item: Any) -> str | None:
    if isinstance(item, (str, bytes)) and len(item) > MAX_TEXT:
        return f"holds a text of {len(item)} characters, more than {MAX_TEXT}"
    if isinstance(item, int) and item.bit_length() > MAX_INT_BITS:
        return f"holds an integer of {item.bit_length()} bits, more than {MAX_INT_BITS}"
    return None


def _children(item: Any) -> list[Any]:
    if isinstance(item, Mapping):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset)):
        return list(item)
    return []


class _BoundedRepr(reprlib.Repr):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel, self.maxlist, self.maxtuple, self.maxdict = 3, 6, 6, 6
        self.maxset, self.maxfrozenset, self.maxdeque, self.maxarray = 6, 6, 6, 6
        self.maxstring = self.maxother = limit

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if x.bit_length() <= 128 else f"<an integer of {x.bit_length()} bits>"


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` in at most ``limit`` characters, computed without formatting the whole value.

    Example:
        >>> shown(list(range(100)))
        '[0, 1, 2, 3, 4, 5, ...]'
    """
    text = _BoundedRepr(limit).repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml(text: str, *, where: str, error: type[Exception], max_items: int = MAX_ITEMS) -> Any:
    """``yaml.safe_load(text)`` with its nodes counted (aliases expanded) before any object is built.

    Raises:
        error: ``where: ...`` for text that is not YAML, a structure over the bounds (an alias bomb, deep
            nesting), or a value Python refuses (a 5000-digit integer).
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters already
        node = loader.get_single_node()
        fault = _node_fault(node, max_items) if node is not None else None
        data = None if fault or node is None else loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise error(f"{where}: not valid YAML{at}: {' '.join(str(problem).split())}") from err
    except RecursionError as err:
        raise error(f"{where}: the YAML is nested too deeply") from err
    except (ValueError, OverflowError) as err:  # int() of a 5000-digit scalar, a date out of range
        raise error(f"{where}: a YAML value cannot be read ({shown(str(err), 120)})") from err
    finally:
        if loader is not None:
            loader.dispose()
    fault = fault or plain_fault(data)
    if fault:
        raise error(f"{where}: the YAML {fault}")
    return data


def _node_fault(root: yaml.Node, max_items: int) -> str | None:
    too_many = f"expands to more than {max_items} values (its aliases counted each time they are used)"
    return _walk_fault(
        root, _node_children, _scalar_fault, too_many, max_items=max_items, max_depth=MAX_DEPTH
    )


def _scalar_fault(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_TEXT:
        return f"holds a value of {len(node.value)} characters, more than {MAX_TEXT}"
    return None


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.ScalarNode):
        return []
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)
