"""The exceptions qplan raises; every one derives from :class:`Error`.

Driver errors are mapped onto the PEP 249 names below by the backends and
re-raised ``from`` the original, so the driver's own exception stays reachable
as ``__cause__``.
"""

from __future__ import annotations

import difflib
from typing import Iterable


class Error(Exception):
    """Base class of every qplan error."""


class ConfigurationError(Error):
    """Bad settings: an unknown alias, a malformed URL, an unknown engine."""


class PlanError(Error, ValueError):
    """A plan was built wrongly: a bad slice, a filter after a slice, a misplaced call."""


class FieldError(PlanError):
    """A plan names an unknown field or lookup, or gives a value of the wrong type."""


class RoutingError(Error):
    """Routing refused a plan: models on different databases, or no alias could serve it."""


class UnsafePayload(Error):
    """A payload that is not a qplan plan, was tampered with, or cannot be trusted."""


class ObjectDoesNotExist(Error):
    """``get()`` found no row; each model has its own ``Model.DoesNotExist`` subclass."""


class MultipleObjectsReturned(Error):
    """``get()`` found several rows; each model has its own subclass."""


class TransactionManagementError(Error):
    """A transaction was used in a way the connection's state does not allow."""


class DatabaseError(Error):
    """An error reported by the database or its driver."""


class InterfaceError(DatabaseError):
    """The driver's interface misbehaved (for example a closed connection)."""


class DataError(DatabaseError):
    """The database refused a value (too long, out of range)."""


class OperationalError(DatabaseError):
    """The database cannot be reached or failed to carry out a statement."""


class ConnectionFailure(OperationalError):
    """The server could not be reached, or the connection to it broke.

    The only error a read fails over on: a query error (a timeout, a syntax error, too
    many variables) is the query's, not the server's, and marks nothing down.
    """


class PoolTimeout(OperationalError):
    """No pooled connection of an alias came free within the pool's ``timeout``.

    Not a ``ConnectionFailure``: a busy pool is not a dead server, so a read does not fail
    over on it and no replica is marked down.
    """


class SerializationFailure(OperationalError):
    """The database aborted a transaction because it conflicted with another one (a deadlock,
    a Galera certification conflict: MariaDB error 1213). Nothing of it was committed; qplan
    never retries it (a write may be retried only by the caller, who knows it is safe)."""


class ReadOnlyError(DatabaseError):
    """A write was refused before it reached a read-only alias (``READ_ONLY`` or a replica)."""


class IntegrityError(DatabaseError):
    """A constraint was violated: unique, foreign key, not null."""


class InternalError(DatabaseError):
    """The database reported an internal error."""


class ProgrammingError(DatabaseError):
    """The statement was invalid for this database."""


class NotSupportedError(DatabaseError):
    """The plan asks for something this database cannot do."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """A ``; did you mean ...`` tail naming the closest valid names, or the valid names."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "; choices are: " + ", ".join(choices) if choices else ""
