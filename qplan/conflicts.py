"""``bulk_create``'s conflict options as a plain record, checked as Django 5.2 checks them.

``options(...)`` turns ``ignore_conflicts`` / ``update_conflicts`` / ``update_fields`` /
``unique_fields`` into the trailing element of an insert record:

- ``None``: no options (the record stays ``("insert", names, rows)``);
- ``("ignore",)``: rows that clash with an existing row on any unique key are skipped;
- ``("update", update_names, unique_names)``: a clashing row updates ``update_names`` of the
  existing row instead; ``unique_names`` is the conflict target (may be empty).

The checks that do not depend on the database run here, when the plan is built (Django's
``_check_bulk_create_options``); ``require_target`` is the one that does: PostgreSQL,
SQLite and DuckDB need ``unique_fields`` to update on conflict, MariaDB cannot name a
target (any unique key conflicts there) and accepts and ignores them.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, PlanError


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)) \
            or not all(isinstance(n, str) for n in value):
        raise FieldError(f"bulk_create(): {what} is a list of field names, got {value!r}")
    return tuple(value)


def _concrete(meta: Any, name: str, what: str) -> Any:
    if any(f.name == name for f in meta.many_to_many):
        raise FieldError(f"bulk_create() can only be used with concrete fields in {what}: "
                         f"{meta.model.__name__}.{name} is a many-to-many field")
    return meta.get_field(name)


def unique_sets(meta: Any) -> list[frozenset[str]]:
    """The sets of field names whose values are unique together: the primary key, each
    unique field, ``unique_together`` and ``UniqueConstraint`` fields."""
    by_column = {f.column: f.name for f in meta.fields}
    sets = [frozenset((f.name,)) for f in meta.fields if f.primary_key or f.unique]
    sets += [frozenset(by_column[c] for c in cols) for _, cols in meta.uniques]
    return sets


def options(meta: Any, ignore_conflicts: bool, update_conflicts: bool, update_fields: Any,
            unique_fields: Any) -> tuple | None:
    """The record of the options (see the module docstring); typed errors for misuse."""
    if ignore_conflicts and update_conflicts:
        raise PlanError("ignore_conflicts and update_conflicts are mutually exclusive.")
    model = meta.model.__name__
    unique = tuple(_concrete(meta, n, "unique_fields").name for n in
                   _names(unique_fields, "unique_fields"))
    if ignore_conflicts:
        return ("ignore",)
    if not update_conflicts:
        return None
    update = _names(update_fields, "update_fields")
    if not update:
        raise PlanError("Fields that will be updated when a row insertion fails on conflicts "
                        "must be provided.")
    for name in update:
        if _concrete(meta, name, "update_fields").primary_key:
            raise FieldError(f"bulk_create() cannot be used with primary keys in update_fields "
                             f"({model}.{name}).")
    update = tuple(meta.get_field(n).name for n in update)
    if len(set(update)) != len(update) or len(set(unique)) != len(unique):
        raise FieldError("bulk_create(): update_fields and unique_fields name each field once")
    if unique and frozenset(unique) not in unique_sets(meta):
        raise FieldError(f"bulk_create(): unique_fields {list(unique)!r} are not unique in "
                         f"{model}: give the primary key, a unique field or the fields of a "
                         f"unique_together / UniqueConstraint")
    return ("update", update, unique)


def check_rows(option: tuple | None, names: tuple[str, ...], rows: tuple) -> None:
    """``PlanError`` when two rows of one upsert share their ``unique_fields`` values:
    PostgreSQL refuses such a statement, SQLite and MariaDB keep the last row, DuckDB the
    first, so qplan refuses it everywhere (rows with a NULL among them never clash)."""
    if not option or option[0] != "update" or not option[2]:
        return
    at = [names.index(n) for n in option[2] if n in names]
    if len(at) != len(option[2]):
        return  # an auto primary key not given: new rows, no clash among them
    seen: set = set()
    for row in rows:
        key = tuple(row[i][1] for i in at)
        if None in key:
            continue
        if key in seen:
            raise PlanError(f"bulk_create(update_conflicts=True): two objects have the same "
                            f"{', '.join(option[2])} {key!r}; each row may be proposed once")
        seen.add(key)


def require_target(option: tuple | None, backend: Any) -> None:
    """``PlanError`` where ``backend`` must name the conflict target and ``option`` has none."""
    if option and option[0] == "update" and not option[2] and backend.UPSERT_NEEDS_TARGET:
        raise PlanError(f"Unique fields that can trigger the upsert must be provided "
                        f"(unique_fields=...: {backend.name} updates on conflict with a named "
                        f"unique key only).")


def check_record(meta: Any, option: Any) -> tuple:
    """A loaded options element rebuilt through ``options`` (it must come back identical)."""
    if type(option) is not tuple or not option or option[0] not in ("ignore", "update"):
        raise PlanError(f"insert options are not a conflict record: {option!r:.80}")
    if option[0] == "ignore":
        if len(option) != 1:
            raise PlanError(f"insert options are not a conflict record: {option!r:.80}")
        return options(meta, True, False, None, None) or ()
    if len(option) != 3 or type(option[1]) is not tuple or type(option[2]) is not tuple:
        raise PlanError(f"insert options are not a conflict record: {option!r:.80}")
    return options(meta, False, True, option[1], option[2]) or ()


def returns_keys(option: tuple | None, backend: Any) -> bool:
    """Whether a bulk_create sets the new primary keys on its objects (Django): never when
    ignoring conflicts, with ``update_conflicts`` only where the upsert returns them."""
    if option is None:
        return True
    return option[0] == "update" and backend.UPSERT_RETURNS_KEYS


__all__ = ["options", "check_rows", "require_target", "check_record", "returns_keys", "unique_sets"]
