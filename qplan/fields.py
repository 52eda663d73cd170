"""Field types: what a column holds, which lookups it allows, how values are checked.

``clean(value)`` turns a user value into the one plain value a plan stores (an
``int``, ``str``, ``Decimal``, UTC ``datetime``, naive ``time``, ``bytes``, JSON text...), or
raises :class:`FieldError` naming the model and field. Conversion to and from each
database lives in the backends, keyed by ``internal_type``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from typing import Any, Callable

from .errors import FieldError
from .jsonvalues import MAX_JSON_DEPTH, json_depth, json_text_depth, no_json_constant
from .registry import get_model

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
    "regex", "iregex",
}


def _show(value: Any) -> str:
    """``repr(value)`` cut to 80 characters; an int too long to print is shown by its size."""
    if isinstance(value, int) and value.bit_length() > 256:
        return f"of {value.bit_length()} bits"
    return f"{value!r:.80}"


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

    def get_default(self) -> Any:
        if self.default is NOT_PROVIDED:
            return None
        return self.default() if callable(self.default) else self.default

    def fail(self, value: Any, expected: str) -> FieldError:
        owner = self.model.__name__ if self.model is not None else "?"
        return FieldError(
            f"{owner}.{self.name}: expected {expected}, got {type(value).__name__} {_show(value)}"
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

    def from_record(self, value: Any) -> Any:
        """The user value that cleans to ``value``, a value a plan record holds.

        Loaders rebuild a plan from its records with it and refuse the plan unless
        cleaning gives back exactly what the record holds; only JSON differs.
        """
        return value

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<{self.internal_type} {owner}.{self.name}>"


def _integral(value: float | decimal.Decimal, digits: int) -> int | None:
    """``value`` as an int when it is finite, whole and under ``10**digits``; else None.

    The magnitude is read from the exponent (``Decimal.adjusted``) before any
    conversion: ``int(Decimal("1e1000000"))`` would build a million-digit integer.
    """
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) >= 10.0 ** digits:
            return None
        return int(value)
    if not value.is_finite() or value.adjusted() >= digits:
        return None
    whole = int(value)
    return whole if whole == value else None


class IntegerField(Field):
    """A signed 32-bit integer column (-2**31 .. 2**31-1, Django's range)."""

    python_types = (int,)
    bits = 32

    def to_python(self, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return self._in_range(value, value)
        if isinstance(value, str):
            text = value.strip()
            if 0 < len(text) <= 21:  # a sign and 20 digits: any 64-bit integer
                try:
                    return self._in_range(int(text), value)
                except ValueError:
                    pass
        if isinstance(value, (float, decimal.Decimal)):
            if value.is_nan() if isinstance(value, decimal.Decimal) else value != value:
                raise self.fail(value, "an integer, not NaN")
            whole = _integral(value, 20)
            if whole is not None:
                return self._in_range(whole, value)
            if math.isinf(value) or abs(value) >= 10 ** 20:  # compared, never converted
                raise self._out_of_range(value)
            raise self.fail(value, "a whole number")
        raise self.fail(value, "an integer")

    def _in_range(self, number: int, value: Any) -> int:
        limit = 1 << (self.bits - 1)
        if -limit <= number < limit:
            return number
        raise self._out_of_range(value)

    def _out_of_range(self, value: Any) -> FieldError:
        return self.fail(value, f"an integer in the {self.bits}-bit range "
                                f"-2**{self.bits - 1} .. 2**{self.bits - 1}-1")


class BigIntegerField(IntegerField):
    """A signed 64-bit integer column."""

    bits = 64


class AutoField(IntegerField):
    auto = True

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("primary_key", True)
        super().__init__(**kwargs)


class FloatField(Field):
    """A double. NaN is refused (it equals nothing, itself included); ±infinity is kept,
    as plans of format version 1 hold it (tests/golden) and PostgreSQL and SQLite store it."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, (int, float, decimal.Decimal, str)) and not isinstance(value, bool):
            try:
                result = float(value)
            except (ValueError, OverflowError):  # "x", an int beyond a double's range
                raise self.fail(value, "a number") from None
            if result != result:
                raise self.fail(value, "a number, not NaN")
            if math.isinf(result) and not (isinstance(value, float) or _infinity(value)):
                raise self.fail(value, "a number within a double's range")
            return result
        raise self.fail(value, "a number")


def _infinity(value: Any) -> bool:
    """True for an explicit infinity (``Decimal("inf")``, ``"-inf"``), not an overflow."""
    if isinstance(value, decimal.Decimal):
        return value.is_infinite()
    return isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity")


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
            if not result.is_finite():
                raise self.fail(value, "a finite decimal number")
            whole_digits = self.max_digits - self.decimal_places
            if result and result.adjusted() >= whole_digits:
                raise self.fail(value, f"a decimal number under 10**{whole_digits} "
                                       f"(max_digits={self.max_digits}, "
                                       f"decimal_places={self.decimal_places})")
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
            try:
                return value.astimezone(UTC)
            except OverflowError:  # year 1 at +01:00 is before datetime.min in UTC
                raise self.fail(value, "a datetime that exists in UTC (years 1..9999)") from None
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise self.fail(value, "a datetime")


class TimeField(Field):
    """A time of day, naive, to the microsecond on every backend (as Django's TimeField:
    a datetime gives its time, in UTC when aware, as qplan stores datetimes).

    Aware times are refused: a time's offset has no date to apply to, and no backend
    keeps it (Django's MySQL and SQLite backends refuse them too).
    """

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            value = _parse_iso(_dt.time.fromisoformat, self, value, "an ISO time")
        if isinstance(value, _dt.datetime):
            if value.tzinfo is not None:
                value = DateTimeField.to_python(self, value)
            return value.time()
        if isinstance(value, _dt.time):
            if value.tzinfo is not None:
                raise self.fail(value, "a time without a time zone (naive)")
            return value.replace(fold=0) if value.fold else value
        raise self.fail(value, "a time")


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
        if json_depth(value) > MAX_JSON_DEPTH:
            raise self.fail_json(f"nested more than {MAX_JSON_DEPTH} deep")
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise self.fail(value, f"a JSON-serialisable value ({exc})") from None
        except RecursionError:  # shared containers, counted once above, nest deeper
            raise self.fail_json(f"nested more than {MAX_JSON_DEPTH} deep") from None

    def fail_json(self, problem: str) -> FieldError:
        owner = self.model.__name__ if self.model is not None else "?"
        return FieldError(f"{owner}.{self.name}: a JSON value {problem}")

    def from_record(self, value: Any) -> Any:
        if value is None:  # SQL NULL, written by null=True
            return None
        if type(value) is not str:
            raise self.fail(value, "JSON text")
        if json_text_depth(value) > MAX_JSON_DEPTH:
            raise self.fail_json(f"nested more than {MAX_JSON_DEPTH} deep")
        try:
            return json.loads(value, parse_constant=no_json_constant)
        except (ValueError, RecursionError):
            raise self.fail(value, "JSON text") from None

    def to_attr(self, value: Any) -> Any:
        self.to_python(value)
        return value




def points_at(to: Any, model: Any, key: str | None = None) -> bool:
    """Whether the relation target ``to`` as written (``"self"``, a class, a registry key or
    class name) is ``model`` itself (whose registry ``key`` defaults to ``module.QualName``:
    ``model`` may be still being defined, not registered yet)."""
    if isinstance(to, str):
        return to in ("self", model.__name__, key or f"{model.__module__}.{model.__qualname__}")
    return to is model


def _resolve_target(field: Any) -> Any:
    """``field._to`` as a model class, resolved (and kept) on first use: ``"self"`` is the
    field's own model, another str a registry key or unique class name."""
    to = field._to
    if isinstance(to, str):
        to = field.model if to == "self" else get_model(to)
        field._to = to
    return to


class ForeignKey(Field):
    """A reference to another model's primary key, stored in the column ``<name>_id``."""

    is_relation = True

    def __init__(
        self,
        to: Any,
        on_delete: str = CASCADE,
        *,
        related_name: str | None = None,
        related_query_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if on_delete not in ON_DELETE:
            raise FieldError(f"on_delete must be one of {sorted(ON_DELETE)}, got {on_delete!r}")
        _check_related_names(related_name, related_query_name)
        super().__init__(**kwargs)
        self._to = to
        self.on_delete = on_delete
        self.related_name = related_name
        self.related_query_name = related_query_name

    @property
    def lookups(self) -> frozenset[str]:  # type: ignore[override]
        return self.target_field.lookups

    @property
    def target(self) -> Any:
        """The referenced model class (``"self"`` and registry names resolved on first use)."""
        return _resolve_target(self)

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
        target = self.target_field
        try:
            return target.to_python(value)
        except FieldError as exc:  # named after this field, not the target's primary key
            text = str(exc).removeprefix(f"{target.model.__name__}.{target.name}: ")
            raise FieldError(f"{self.model.__name__}.{self.name}: {text}") from None

    @property
    def internal_type(self) -> str:
        kind = self.target_field.internal_type
        return "IntegerField" if kind == "AutoField" else kind


class OneToOneField(ForeignKey):
    """A unique foreign key: ``profile.author`` forward, ``author.profile`` (one instance,
    or ``RelatedObjectDoesNotExist``) backward."""

    one_to_one = True

    def __init__(self, to: Any, on_delete: str = CASCADE, **kwargs: Any) -> None:
        kwargs["unique"] = True
        super().__init__(to, on_delete, **kwargs)


ForeignKey.one_to_one = False  # type: ignore[attr-defined]


def _check_related_names(related_name: Any, related_query_name: Any) -> None:
    """A reverse name is an identifier without ``__`` (or ``"+"``: no reverse accessor)."""
    for what, name in (("related_name", related_name), ("related_query_name", related_query_name)):
        if name is None or (name == "+" and what == "related_name"):
            continue
        if not isinstance(name, str) or not name.isidentifier() or "__" in name \
                or name.startswith("_"):
            raise FieldError(f"{what} must be an identifier without '__' and not starting "
                             f"with '_', got {name!r:.80}")


class ManyToManyField:
    """A many-to-many relation, held in a through table (auto-created as the model
    ``<Model>_<field>`` with two foreign keys, or ``through=`` a model of yours).

    It is no column: models keep it in ``_meta.many_to_many``, not ``_meta.fields``.
    ``book.tags`` is a related manager (``add``/``remove``/``set``/``clear``), and queries
    follow it both ways (``Book.objects.filter(tags__label=...)``, ``Tag.objects.filter(
    book__title=...)``). ``ManyToManyField("self")`` is symmetrical (Django's default): it
    has no reverse side (``related_name`` is ignored) and its managers write and remove the
    two rows ``(a, b)`` and ``(b, a)`` together, so ``a.friends`` lists ``b`` and the
    other way round; ``symmetrical=False`` makes it one-way with a reverse side.
    """

    is_relation = True
    many_to_many = True
    primary_key = False

    def __init__(self, to: Any, *, related_name: str | None = None,
                 related_query_name: str | None = None, through: Any = None,
                 db_table: str | None = None, blank: bool = False,
                 symmetrical: bool | None = None) -> None:
        _check_related_names(related_name, related_query_name)
        if symmetrical is not None and not isinstance(symmetrical, bool):
            raise FieldError(f"ManyToManyField(symmetrical=) is True, False or None, got "
                             f"{symmetrical!r:.80}")
        self.symmetrical = symmetrical  # None: decided by contribute() (True for "self")
        if through is not None and db_table is not None:
            raise FieldError("ManyToManyField: give through= or db_table=, not both")
        self._to = to
        self.related_name = related_name
        self.related_query_name = related_query_name
        self._through = through
        self.db_table = db_table
        self.auto_created = through is None
        self.name = ""
        self.model: Any = None

    def contribute(self, model: Any, name: str) -> None:
        """As Django: ``symmetrical`` defaults to True for ``"self"`` only; a symmetrical
        relation must point at its own model (``FieldError`` here, at the class statement)."""
        if self.symmetrical is None:
            self.symmetrical = self._to == "self" or self._to is model
        elif self.symmetrical and not points_at(self._to, model):
            raise FieldError(f"{model.__name__}.{name}: symmetrical=True needs a relation to "
                             f"'self', not to {getattr(self._to, '__name__', self._to)!r}")
        self.model = model
        self.name = name

    @property
    def target(self) -> Any:
        """The related model class (``"self"`` and registry names resolved on first use)."""
        return _resolve_target(self)

    @property
    def through(self) -> Any:
        """The through model (resolved from its registry name on first use)."""
        through = self._through
        if isinstance(through, str):
            through = self._through = get_model(through)
        return through

    def link_fields(self) -> tuple[ForeignKey, ForeignKey]:
        """The through model's foreign keys ``(to this model, to the target)``; for a
        through model of yours, the first foreign key to each side (``FieldError`` if none)."""
        through = self.through._meta
        fks = [f for f in through.fields if isinstance(f, ForeignKey)]
        if self.auto_created:
            return fks[0], fks[1]
        source = [f for f in fks if f.target is self.model]
        target = [f for f in fks if f.target is self.target and f is not (source[:1] or [None])[0]]
        if not source or not target:
            raise FieldError(f"{self!r}: through model {self.through.__name__} needs a foreign "
                             f"key to {self.model.__name__} and one to {self.target.__name__}")
        return source[0], target[0]

    def __repr__(self) -> str:
        owner = self.model.__name__ if self.model is not None else "?"
        return f"<ManyToManyField {owner}.{self.name}>"
