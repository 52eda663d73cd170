"""``Index``, ``UniqueConstraint`` and ``CheckConstraint``: what ``Meta.indexes`` and
``Meta.constraints`` hold.

Plain descriptions checked when the model class is defined (``qplan.models``) and turned
into DDL by ``create_tables`` (``Backend.create_table``). A name is what Django 5.2 allows
an index: at most 30 characters, letters, digits and underscores, not starting with a
digit or an underscore.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from .errors import FieldError

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,29}")


def check_name(name: Any, what: str) -> str:
    """``name`` when it is a valid index or constraint name; ``FieldError`` otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise FieldError(f"{what} name {name!r} is not valid: at most 30 letters, digits and "
                         f"underscores, starting with a letter")
    return name


def _fields(fields: Any, what: str) -> tuple[str, ...]:
    if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields \
            or not all(isinstance(f, str) for f in fields):
        raise FieldError(f"{what}(fields=...) is a non-empty list of field names, got {fields!r}")
    if len(set(fields)) != len(fields):
        raise FieldError(f"{what}(fields={list(fields)!r}) names a field twice")
    return tuple(fields)


class Index:
    """``Index(fields=['a', 'b'], name='x_ab_idx')``: a (non-unique) index on the columns."""

    def __init__(self, *, fields: Any, name: str | None = None) -> None:
        self.fields = _fields(fields, "Index")
        self.name = None if name is None else check_name(name, "Index")

    def __repr__(self) -> str:
        return f"Index(fields={list(self.fields)!r}, name={self.name!r})"


class UniqueConstraint:
    """``UniqueConstraint(fields=['a', 'b'], name='x_ab_uniq')``: no two rows share the
    values (rows with a NULL among them never clash, as in SQL)."""

    def __init__(self, *, fields: Any, name: str) -> None:
        self.fields = _fields(fields, "UniqueConstraint")
        self.name = check_name(name, "UniqueConstraint")

    def __repr__(self) -> str:
        return f"UniqueConstraint(fields={list(self.fields)!r}, name={self.name!r})"


class CheckConstraint:
    """``CheckConstraint(condition=Q(pages__gte=0), name='x_pages_gte_0')``: every row must
    satisfy the condition (a row where it is NULL, unknown, passes, as in SQL). Django 5.1+
    spells it ``condition=``; the deprecated ``check=`` means the same (with a warning).

    The condition is checked when the model class is defined (``qplan.checks``: the model's
    own columns only) and written into CREATE TABLE with its values as SQL literals.
    """

    def __init__(self, *, name: str, condition: Any = None, check: Any = None) -> None:
        if check is not None:
            if condition is not None:
                raise FieldError("CheckConstraint: give condition= (check= is its deprecated "
                                 "spelling), not both")
            warnings.warn("CheckConstraint.check is deprecated in favor of `.condition`.",
                          DeprecationWarning, stacklevel=2)
            condition = check
        if condition is None:
            raise FieldError("CheckConstraint needs condition=Q(...)")
        self.condition = condition
        self.name = check_name(name, "CheckConstraint")

    def __repr__(self) -> str:
        return f"CheckConstraint(condition={self.condition!r}, name={self.name!r})"
