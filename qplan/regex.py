"""The one regular-expression flavour every backend matches alike, for ``__regex``/``__iregex``.

PostgreSQL (ARE), MariaDB (PCRE2), DuckDB (RE2) and SQLite (Python ``re``, registered per
connection) agree on this subset of POSIX ERE: literal characters; ``.``; bracket
expressions ``[abc]``, ``[^a-z]`` (no ``[:class:]``, no backslash, not starting with
``]``); anchors ``^`` ``$``; groups ``( )`` (no ``(?...)``); alternation ``|``;
greedy quantifiers ``* + ? {m} {m,} {m,n}`` (m, n <= 255); a backslash only before one
of ``. [ ] ( ) * + ? { } | ^ $ \\`` (a literal). Anything else (``\\d``, ``\\w``, ``\\b``,
back references, lazy quantifiers, look-arounds) is refused when the plan is built.
The search is unanchored (a match anywhere). Not unified: ``.`` on text holding a
newline (PostgreSQL matches it, the others do not) and ``$`` before a final newline.
``__iregex`` compares both sides lower-cased as ``__iexact`` does.
"""

from __future__ import annotations

import re

META = set(".[]()*+?{}|^$\\")
_REPEAT = re.compile(r"\{(\d{1,3})(,(\d{1,3})?)?\}")


def check(pattern: str) -> str:
    """``pattern`` when it is in the shared subset; ``ValueError`` naming what is not."""
    if not isinstance(pattern, str):
        raise ValueError(f"a regex is a str, got {pattern!r:.80}")
    i, n, depth = 0, len(pattern), 0
    atom = False  # the previous item can take a quantifier
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n or pattern[i + 1] not in META:
                raise ValueError(f"regex escape {pattern[i:i + 2]!r} is not in the shared subset "
                                 f"(only a backslash before one of .[]()*+?{{}}|^$\\)")
            i, atom = i + 2, True
            continue
        if c == "[":
            end = _bracket(pattern, i)
            i, atom = end + 1, True
            continue
        if c in "*+?":
            if not atom:
                raise ValueError(f"regex quantifier {c!r} at {i} follows nothing")
            if i + 1 < n and pattern[i + 1] in "*+?{":
                raise ValueError(f"regex {pattern[i:i + 2]!r}: lazy, possessive or repeated "
                                 f"quantifiers are not in the shared subset")
            i, atom = i + 1, False
            continue
        if c == "{":
            m = _REPEAT.match(pattern, i)
            if not m or not atom:
                raise ValueError(f"regex {{ at {i}: write {{m}}, {{m,}} or {{m,n}} after an atom "
                                 f"(a literal brace is \\{{)")
            low, high = int(m.group(1)), m.group(3)
            if low > 255 or (high is not None and not low <= int(high) <= 255):
                raise ValueError(f"regex repeat {m.group(0)} must have m <= n <= 255")
            i, atom = m.end(), False
            if i < n and pattern[i] in "*+?{":
                raise ValueError("regex: a repeat cannot take another quantifier")
            continue
        if c == "(":
            if pattern.startswith("(?", i):
                raise ValueError("regex (?...) groups are not in the shared subset")
            if pattern.startswith("()", i):
                raise ValueError("regex: an empty group () is not in the shared subset")
            depth, i, atom = depth + 1, i + 1, False
            continue
        if c == ")":
            if depth == 0:
                raise ValueError(f"regex: unbalanced ) at {i}")
            depth, i, atom = depth - 1, i + 1, True
            continue
        if c == "]" or c == "}":
            raise ValueError(f"regex: a literal {c!r} must be escaped (\\{c})")
        atom = c not in "|^$"
        i += 1
    if depth:
        raise ValueError("regex: unbalanced (")
    return pattern


def _bracket(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the bracket expression opened at ``start``."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        raise ValueError("regex: a bracket expression cannot start with ] in the shared subset")
    first = i
    while i < len(pattern) and pattern[i] != "]":
        c = pattern[i]
        if c == "\\":
            raise ValueError("regex: a backslash inside [...] is not in the shared subset")
        if c == "[" and pattern.startswith(("[:", "[=", "[."), i):
            raise ValueError("regex: [:class:] and collating elements are not in the shared subset")
        if c == "[":
            raise ValueError("regex: a literal [ inside [...] is not in the shared subset")
        i += 1
    if i >= len(pattern) or i == first:
        raise ValueError("regex: unclosed or empty bracket expression")
    body = pattern[first:i]
    if "--" in body or "&&" in body or "~~" in body or "||" in body:
        raise ValueError("regex: set operations (--, &&, ~~, ||) inside [...] are not shared")
    for m in re.finditer(r"(.)-(.)", body):
        if ord(m.group(1)) > ord(m.group(2)):
            raise ValueError(f"regex: range {m.group(0)!r} is reversed")
    return i

