"""How deep JSON nests: the checks ``JSONField`` runs before ``json.dumps``/``json.loads``.

Plain functions of values and text, with no field in them, so ``qplan.fields`` keeps to
field types.
"""

from __future__ import annotations

from typing import Any

# MySQL refuses JSON documents nested deeper than 100 levels; qplan refuses them on every
# backend, which also keeps json.dumps/json.loads far from Python's recursion limit.
MAX_JSON_DEPTH = 100


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep lists and dicts nest in ``value`` (walked without recursion, each container
    once); stops as soon as it passes ``limit``."""
    deepest, stack, seen = 0, [(value, 1)], set()
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (list, tuple, dict)) or id(node) in seen:
            continue
        seen.add(id(node))
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
    return deepest


def json_text_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON ``text`` (brackets outside strings)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def no_json_constant(name: str) -> Any:
    raise ValueError(f"JSON text holds {name}")
