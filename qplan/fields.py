"""Field types: what a column holds, which lookups it allows, how values are checked.

``clean(value)`` turns a user value into the one plain value a plan stores (an
``int``, ``str``, ``Decimal``, UTC ``datetime``, ``bytes``, a JSON string...), or
raises :class:`FieldError` naming the model and field. Conversion to and from each
database lives in the backends, keyed by ``internal_type``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
from typing import Any, Callable

from .errors import FieldError

UTC = _dt.timezone.utc

NOT_PROVIDED: Any = object()

# on_delete actions for ForeignKey, spelled as the SQL they become.
CASCADE = "CASCADE"
PROTECT = "RESTRICT"
RESTRICT = "RESTRICT"
SET_NULL = "SET NULL"
DO_NOTHING = "NO ACTION"
ON_DELETE = frozenset({CASCADE, RESTRICT, SET_NULL, DO_NOTHING})

BASIC_LOOKUPS = frozenset({"exact", "in", "isnull"})
ORDERED_LOOKUPS = BASIC_LOOKUPS | {"gt", "gte", "lt", "lte", "range"}
TEXT_LOOKUPS = ORDERED_LOOKUPS | {
    "iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith",
}


class Field:
    """A column of a model. Subclasses set ``lookups`` and override ``to_python``."""

    lookups: frozenset[str] = ORDERED_LOOKUPS
    python_types: tuple[type, ...] = ()
    is_relation = False
    auto = False

    def __init__(
        self,
        *,
        null: bool = False,
        default: Any = NOT_PROVIDED,
        unique: bool = False,
        db_index: bool = False,
        primary_key: bool = False,
        db_column: str | None = None,
    ) -> None:
        self.null = null
        self.default = default
        self.unique = unique or primary_key
        self.db_index = db_index
        self.primary_key = primary_key
        self.db_column = db_column
        self.name = ""
        self.attname = ""
        self.column = ""
        self.model: Any = None

    @property
    def internal_type(self) -> str:
        return type(self).__name__

    def contribute(self, model: Any, name: str) -> None:
        """Bind the field to its model under ``name`` (called by the model metaclass)."""
        self.model = model
        self.name = name
        self.attname = self.attname_for(name)
        self.column = self.db_column or self.attname

    def attname_for(self, name: str) -> str:
        return name

    def has_default(self) -> bool:
        return self.default is not NOT_PROVIDED

    def get_default(self) -> Any:
        if self.default is NOT_PROVIDED:
            return None
        return self.default() if callable(self.default) else self.default

    def fail(self, value: Any, expected: str) -> FieldError:
        owner = self.model.__name__ if self.model is not None else "?"
        return FieldError(
            f"{owner}.{self.name}: expected {expected}, got {type(value).__name__} {value!r}"
        )

    def to_python(self, value: Any) -> Any:
        """The plain value stored for ``value`` (never None); raise ``self.fail`` otherwise."""
        if isinstance(value, self.python_types) and not isinstance(value, bool):
            return value
        raise self.fail(value, " or ".join(t.__name__ for t in self.python_types))

    def to_attr(self, value: Any) -> Any:
        """The value an instance attribute holds (the plan value, except for JSON)."""
        return self.to_python(value)

    def clean(self, value: Any) -> Any:
        """Check and normalise a value for a filter (None is handled by the caller)."""
        return self.to_python(value)

    def clean_write(self, value: Any) -> Any:
        """Check a value about to be written: nulls, then the type."""
        if value is None:
            if self.null or self.auto:
                return None
            raise FieldError(f"{self.model.__name__}.{self.name} cannot be None (null=False)")
        return self.to_python(value)

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<{self.internal_type} {owner}.{self.name}>"


class IntegerField(Field):
    python_types = (int,)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if isinstance(value, (float, decimal.Decimal)) and value == int(value):
            return int(value)
        raise self.fail(value, "an integer")


class BigIntegerField(IntegerField):
    pass


class AutoField(IntegerField):
    auto = True

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("primary_key", True)
        super().__init__(**kwargs)


class FloatField(Field):
    def to_python(self, value: Any) -> Any:
        if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise self.fail(value, "a number")


class DecimalField(Field):
    def __init__(self, *, max_digits: int, decimal_places: int, **kwargs: Any) -> None:
        if not (isinstance(max_digits, int) and isinstance(decimal_places, int)
                and 0 <= decimal_places <= max_digits):
            raise FieldError(
                f"DecimalField needs max_digits >= decimal_places >= 0, "
                f"got {max_digits!r}, {decimal_places!r}"
            )
        super().__init__(**kwargs)
        self.max_digits = max_digits
        self.decimal_places = decimal_places

    def to_python(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.fail(value, "a decimal number")
        if isinstance(value, float):
            value = repr(value)
        if isinstance(value, (int, str, decimal.Decimal)):
            try:
                result = decimal.Decimal(value)
            except decimal.InvalidOperation:
                raise self.fail(value, "a decimal number") from None
            if result.is_finite():
                return result
        raise self.fail(value, "a finite decimal number")

    def quantize(self, value: decimal.Decimal) -> decimal.Decimal:
        """``value`` at this field's scale, as every backend returns it."""
        return value.quantize(decimal.Decimal(1).scaleb(-self.decimal_places))


class CharField(Field):
    lookups = TEXT_LOOKUPS
    python_types = (str,)

    def __init__(self, *, max_length: int, **kwargs: Any) -> None:
        if not isinstance(max_length, int) or max_length < 1:
            raise FieldError(f"CharField needs a positive integer max_length, got {max_length!r}")
        super().__init__(**kwargs)
        self.max_length = max_length

    def clean_write(self, value: Any) -> Any:
        value = super().clean_write(value)
        if value is not None and len(value) > self.max_length:
            raise FieldError(
                f"{self.model.__name__}.{self.name}: {len(value)} characters exceed "
                f"max_length={self.max_length}"
            )
        return value


class TextField(Field):
    lookups = TEXT_LOOKUPS
    python_types = (str,)


class BooleanField(Field):
    lookups = BASIC_LOOKUPS

    def to_python(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail(value, "a bool")


def _parse_iso(parse: Callable[[str], Any], field: Field, value: str, expected: str) -> Any:
    try:
        return parse(value)
    except ValueError:
        raise field.fail(value, expected) from None


class DateField(Field):
    def to_python(self, value: Any) -> Any:
        if isinstance(value, _dt.datetime):
            raise self.fail(value, "a date (not a datetime)")
        if isinstance(value, _dt.date):
            return value
        if isinstance(value, str):
            return _parse_iso(_dt.date.fromisoformat, self, value, "an ISO date")
        raise self.fail(value, "a date")


class DateTimeField(Field):
    """Stored in UTC; naive datetimes are taken as UTC, values come back aware in UTC."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            value = _parse_iso(_dt.datetime.fromisoformat, self, value, "an ISO datetime")
        if isinstance(value, _dt.datetime):
            if value.tzinfo is None:
                return value.replace(tzinfo=UTC)
            return value.astimezone(UTC)
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise self.fail(value, "a datetime")


class BinaryField(Field):
    lookups = BASIC_LOOKUPS

    def to_python(self, value: Any) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise self.fail(value, "bytes")


class JSONField(Field):
    """Any JSON value; a plan holds it as canonical JSON text so plans stay plain."""

    lookups = frozenset({"isnull"})

    def to_python(self, value: Any) -> Any:
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self.fail(value, f"a JSON-serialisable value ({exc})") from None

    def to_attr(self, value: Any) -> Any:
        self.to_python(value)
        return value


class ForeignKey(Field):
    """A reference to another model's primary key, stored in the column ``<name>_id``."""

    is_relation = True

    def __init__(
        self,
        to: Any,
        on_delete: str = CASCADE,
        *,
        related_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if on_delete not in ON_DELETE:
            raise FieldError(f"on_delete must be one of {sorted(ON_DELETE)}, got {on_delete!r}")
        super().__init__(**kwargs)
        self._to = to
        self.on_delete = on_delete
        self.related_name = related_name

    @property
    def lookups(self) -> frozenset[str]:  # type: ignore[override]
        return self.target_field.lookups

    @property
    def target(self) -> Any:
        """The referenced model class (``"self"`` and registry names resolved on first use)."""
        to = self._to
        if isinstance(to, str):
            from .models import get_model

            to = self.model if to == "self" else get_model(to)
            self._to = to
        return to

    @property
    def target_field(self) -> Field:
        return self.target._meta.pk

    def attname_for(self, name: str) -> str:
        return name + "_id"

    def to_python(self, value: Any) -> Any:
        meta = getattr(type(value), "_meta", None)
        if meta is not None:
            if not issubclass(type(value), self.target):
                raise self.fail(value, f"a {self.target.__name__} or its primary key")
            value = value.pk
            if value is None:
                raise FieldError(
                    f"{self.model.__name__}.{self.name}: the {self.target.__name__} is not saved yet"
                )
        return self.target_field.to_python(value)

    @property
    def internal_type(self) -> str:
        kind = self.target_field.internal_type
        return "IntegerField" if kind == "AutoField" else kind
