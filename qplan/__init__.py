"""qplan: immutable, picklable query plans for SQLite, PostgreSQL, MariaDB/MySQL and DuckDB.

Write a query once as a plan, cache or ship it, and decide late where it runs.
This module only re-exports the public surface.
"""

from . import aio, backends, execution, fields, models, related, runner
from .aio import aatomic
from .shapecache import cache as compile_cache
from .connections import connection, connections
from .errors import (ConfigurationError, ConnectionFailure, DatabaseError, DataError, Error, FieldError,
                     IntegrityError, InterfaceError, InternalError, MultipleObjectsReturned,
                     NotSupportedError, ObjectDoesNotExist, OperationalError, PlanError,
                     PoolTimeout, ProgrammingError, ReadOnlyError, RoutingError,
                     SerializationFailure, TransactionManagementError, UnsafePayload)
from .schema import create_tables, drop_tables
from .constraints import CheckConstraint, Index, UniqueConstraint
from .expressions import Avg, Count, ExpressionWrapper, F, Max, Min, OrderBy, Q, StdDev, Sum, Variance
from .subqueries import Exists, OuterRef, Subquery
from . import functions
from .functions import Case, Value, When
from .jsonplan import from_json
from .models import Model, get_model
from .payloads import dumps, loads
from .plan import Compiled, Plan
from .prefetch import Prefetch
from .routing import PrimaryReplica, Random, RoundRobin
from .configuration import add_database, configure, remove_database, reset
from .sharding import Sharded, ShardSet, partial_results
from .transactions import atomic

runner.install(execution.engine)  # plans and models evaluate through it
runner.install_async(aio)  # ... and are awaited through it
models.install_related(related.install)  # writer.novel_set, novel.genres, writer.bio

__version__ = "0.1.0"

__all__ = [
    "aatomic", "Avg", "Case", "CheckConstraint", "Compiled", "ConfigurationError", "ConnectionFailure", "Count", "DataError", "DatabaseError", "Error", "Exists", "ExpressionWrapper", "F",
    "FieldError", "Index", "IntegrityError", "InterfaceError", "InternalError", "Max", "Min", "Model",
    "MultipleObjectsReturned", "NotSupportedError", "ObjectDoesNotExist", "OperationalError",
    "OrderBy", "OuterRef", "Plan", "PlanError", "Prefetch", "PoolTimeout", "PrimaryReplica", "ProgrammingError", "Q", "Random", "ReadOnlyError",
    "RoundRobin",
    "RoutingError", "SerializationFailure", "ShardSet", "Sharded", "StdDev", "Subquery", "Sum", "TransactionManagementError",
    "UniqueConstraint",
    "UnsafePayload", "Value", "Variance", "When", "add_database", "atomic", "compile_cache", "configure", "connection",
    "backends", "connections", "create_tables", "drop_tables", "dumps", "fields", "from_json", "functions", "get_model",
    "loads", "partial_results", "remove_database", "reset",
]
