"""The pool: shards run concurrently, partial results, and errors that name their shard.

``_gather`` runs one job per shard on a bounded thread pool (the calling thread
takes the first) and either raises the first failure, named after its shard, or,
inside ``partial_results()``, leaves failed shards out of a read. A worker borrows a
driver connection from its alias's connection pool (``qplan.pools``) per statement,
as every thread does, so idle workers hold no connection.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from .. import routing
from ..connections import connections
from ..errors import ConfigurationError, DatabaseError, Error, NotSupportedError
from ..replication import failover_steps, with_failover
from ..steps import GATHER, Steps
from ..transactions import in_block
from ..plan import Plan
from .router import Shard

MAX_WORKERS = 16
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def set_max_workers(n: int) -> None:
    """Bound the threads that query shards (default 16); takes effect for the next plan."""
    global MAX_WORKERS
    if not isinstance(n, int) or n < 1:
        raise ConfigurationError(f"max_workers must be a positive integer, got {n!r}")
    MAX_WORKERS = n
    shutdown(wait=False)


def shutdown(wait: bool = True) -> None:
    """Stop the pool's threads (they hold no connection between jobs). A new pool starts on use."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=wait)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="qplan-shard")
        return _pool


class PartialResult:
    """What ``partial_results()`` yields: the shards that failed (name -> error), if any."""

    def __init__(self) -> None:
        self.failed: dict[str, BaseException] = {}

    @property
    def complete(self) -> bool:
        return not self.failed

    def __repr__(self) -> str:
        return f"<PartialResult failed={sorted(self.failed)!r}>"


class PartialResultWarning(UserWarning):
    """A read inside ``partial_results()`` skipped a failed shard."""


_partial: contextvars.ContextVar[PartialResult | None] = contextvars.ContextVar(
    "qplan_partial", default=None)


@contextlib.contextmanager
def partial_results() -> Iterator[PartialResult]:
    """Opt in: reads skip shards that fail, warn, and list them in the yielded report.

    Writes never do: a write that fails on a shard always raises.
    """
    report = PartialResult()
    token = _partial.set(report)
    try:
        yield report
    finally:
        _partial.reset(token)


class _Job(NamedTuple):
    shard: Shard
    alias: str
    plan: Plan
    call: Callable[[Any], Any] | None = None  # instead of running ``plan``: ``call(connection)``


class _ShardFailure(Exception):
    def __init__(self, alias: str, error: BaseException) -> None:
        super().__init__(alias, error)
        self.alias, self.error = alias, error


def _run_job(engine: Any, job: _Job, write: bool) -> Any:
    """One shard's sub-plan on its alias, on a connection borrowed from the alias's pool for
    the statement; reads may fail over."""
    call = job.call
    attempt = engine.run if call is None else (lambda plan, conn: call(conn))
    try:
        return with_failover(job.plan, job.alias, job.shard.group, attempt, write)
    except DatabaseError as exc:  # anything else (a bug, a TypeError) is no shard's failure
        raise _ShardFailure(getattr(exc, "alias", job.alias), exc) from exc


_MISSING = object()


def _gather(engine: Any, jobs: list[_Job], write: bool = False) -> list[Any]:
    """Run the jobs concurrently (the calling thread takes the first); results in job order.

    Runs them one by one in this thread when a target is inside this thread's
    ``atomic()`` (the transaction lives on this thread's connection). An exception that
    is not a database error propagates once every shard has finished.
    """
    n = len(jobs)
    results: list[Any] = [_MISSING] * n
    failures: list[_ShardFailure | None] = [None] * n
    if n == 1 or in_block() or any(connections[job.alias].in_atomic for job in jobs):
        for i, job in enumerate(jobs):
            try:
                results[i] = _run_job(engine, job, write)
            except _ShardFailure as failure:
                failures[i] = failure
                if write:
                    break
    else:
        pending = []
        for i in range(1, n):
            ctx = contextvars.copy_context()
            while True:
                try:
                    future = _executor().submit(ctx.run, _run_job, engine, jobs[i], write)
                    break
                except RuntimeError:  # the pool was shut down under us: start a new one
                    shutdown(wait=False)
            pending.append((i, ctx, future))
        bug: BaseException | None = None
        try:
            results[0] = _run_job(engine, jobs[0], write)
        except _ShardFailure as failure:
            failures[0] = failure
        except BaseException as exc:  # not a shard's failure: raised once every shard is done
            bug = exc
        for i, ctx, future in pending:
            try:
                results[i] = future.result()
            except _ShardFailure as failure:
                failures[i] = failure
            except BaseException as exc:  # as above
                bug = bug or exc
            routing.adopt(ctx)
        if bug is not None:
            raise bug
    if any(failures):
        _fail(jobs, results, failures, write)
    return results


def _job_steps(engine: Any, job: _Job, write: bool) -> Steps:
    """``_run_job`` as core steps (``qplan.steps``): a failure is returned, not raised, so
    that every shard of a ``GATHER`` finishes, as in ``_gather``."""
    try:
        return (yield from failover_steps(job.plan, job.alias, job.shard.group,
                                          engine.run_steps, write))
    except DatabaseError as exc:
        return _ShardFailure(getattr(exc, "alias", job.alias), exc)


def gather_steps(engine: Any, jobs: list[_Job], write: bool = False) -> Steps:
    """``_gather`` as core steps: one ``GATHER`` of the shards' jobs (the async edge runs
    them concurrently on its event loop), then the same failure handling."""
    if any(job.call is not None for job in jobs):
        raise NotSupportedError("this operation over several shards is not awaited yet")
    done = yield (GATHER, [_job_steps(engine, job, write) for job in jobs])
    results: list[Any] = [_MISSING if isinstance(r, _ShardFailure) else r for r in done]
    failures = [r if isinstance(r, _ShardFailure) else None for r in done]
    if any(failures):
        _fail(jobs, results, failures, write)
    return results


def _fail(jobs: list[_Job], results: list[Any], failures: list[Any], write: bool) -> None:
    report = _partial.get()
    if report is not None and not write:
        for job, failure in zip(jobs, failures):
            if failure is not None:
                report.failed[job.shard.name] = failure.error
        names = [job.shard.name for job, f in zip(jobs, failures) if f is not None]
        warnings.warn(f"partial result: shards {names!r} failed and were left out",
                      PartialResultWarning, stacklevel=4)
        return
    i = next(i for i, f in enumerate(failures) if f is not None)
    failure, job = failures[i], jobs[i]
    note = ""
    others = [jobs[k].shard.name for k, f in enumerate(failures) if f is not None and k != i]
    if others:
        note += f" (shards {others!r} failed too)"
    if write:
        done = [jobs[k].shard.name for k, r in enumerate(results) if r is not _MISSING]
        if done:
            note += f"; the write was committed on shards {done!r} and is not undone there"
    raise _named(failure.error, job.shard, failure.alias, note) from failure.error


def _named(error: BaseException, shard: Shard, alias: str, note: str) -> BaseException:
    """``error`` again, its message naming the shard and alias (same class, for except clauses)."""
    if not isinstance(error, Error):
        return error
    try:
        named = type(error)(f"shard {shard.name!r} (alias {alias!r}): {error}{note}")
    except Exception:  # pragma: no cover - an Error subclass with another signature
        return error
    named.shard, named.alias = shard.name, alias  # type: ignore[attr-defined]
    return named


def _reads(plan: Plan, shards: Sequence[Shard], sub: Plan) -> list[_Job]:
    return [_Job(shard, shard.read_alias(plan), sub) for shard in shards]


def _present(results: list[Any]) -> list[Any]:
    return [r for r in results if r is not _MISSING]
