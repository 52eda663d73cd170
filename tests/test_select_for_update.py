"""select_for_update() (issue 13): a record; FOR UPDATE [OF] [NOWAIT | SKIP LOCKED] where
the backend locks rows (``SELECT_FOR_UPDATE``, its ``SELECT_FOR_UPDATE_OPTIONS``: PostgreSQL
and MariaDB), NotSupportedError elsewhere (SQLite, DuckDB), evaluated inside atomic() only,
and routed to the write alias. Row locks are shown with two connections (two threads:
qplan's connections are per thread). The tests on every backend ask its flags, not its
name, so a new backend is tested by its facts."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

import qplan
from qplan.jsonplan import from_json
from relmodels import Novel, Writer

# select_for_update()'s options, each as a call takes it (SELECT_FOR_UPDATE_OPTIONS names).
OPTIONS = {"nowait": {"nowait": True}, "skip_locked": {"skip_locked": True},
           "of": {"of": ("self",)}, "no_key": {"no_key": True}}


def backend():
    return qplan.connections["default"].backend


def fill() -> None:
    ann = Writer.objects.create(name="Ann", age=50)
    Novel.objects.create(title="A1", pages=100, writer=ann)
    Novel.objects.create(title="A2", pages=200, writer=ann)


def test_the_sql_each_backend_gets():
    plan = Novel.objects.filter(pages__gt=1).select_for_update()
    assert plan.compile("postgresql")[0].endswith(" FOR UPDATE")
    assert plan.compile("mysql")[0].endswith(" FOR UPDATE")
    assert Novel.objects.select_for_update(nowait=True).compile("postgresql")[0].endswith(
        "FOR UPDATE NOWAIT")
    assert Novel.objects.select_for_update(skip_locked=True).compile("mysql")[0].endswith(
        "FOR UPDATE SKIP LOCKED")
    assert Novel.objects.select_for_update(no_key=True).compile("postgresql")[0].endswith(
        "FOR NO KEY UPDATE")
    of = Novel.objects.select_related("writer").select_for_update(of=("self",))
    assert of.compile("postgresql")[0].endswith('FOR UPDATE OF "rel_novel"')
    both = Novel.objects.select_related("writer").select_for_update(of=("self", "writer"))
    for joined in (both, Novel.objects.select_related("writer").select_for_update(),
                   Novel.objects.filter(writer__name="x").select_for_update()):
        with pytest.raises(qplan.NotSupportedError, match="of=\\('self',\\)"):
            joined.compile("postgresql")
    assert "FOR UPDATE" in Novel.objects.select_for_update()[:1].compile("postgresql")[0]
    with pytest.raises(qplan.NotSupportedError, match="aggregate"):
        plan._add(("count",)).compile("postgresql")
    with pytest.raises(qplan.NotSupportedError, match="distinct"):
        plan.distinct().compile("postgresql")
    with pytest.raises(qplan.FieldError, match="followed in the query"):
        Novel.objects.select_for_update(of=("writer",)).compile("postgresql")


@pytest.mark.parametrize("vendor", qplan.backends.names())
def test_each_backend_locks_as_its_flags_say(vendor):
    facts = qplan.backends.get(vendor)
    plan = Novel.objects.filter(pages__gt=1)
    if not facts.SELECT_FOR_UPDATE:
        for kwargs in ({}, *OPTIONS.values()):
            with pytest.raises(qplan.NotSupportedError, match="not supported on .*no row locks"):
                plan.select_for_update(**kwargs).compile(vendor)
        return
    bare = plan.select_for_update().compile(vendor)[0]
    assert bare.endswith(" FOR UPDATE")
    for option, kwargs in OPTIONS.items():
        locking = plan.select_for_update(**kwargs)
        if option in facts.SELECT_FOR_UPDATE_OPTIONS:
            assert locking.compile(vendor)[0] != bare and "UPDATE" in locking.compile(vendor)[0]
        else:
            with pytest.raises(qplan.NotSupportedError, match=f"{option}=.*not supported"):
                locking.compile(vendor)


def test_mistakes_are_caught_when_building():
    with pytest.raises(qplan.PlanError, match="nowait option cannot be used with skip_locked"):
        Novel.objects.select_for_update(nowait=True, skip_locked=True)
    with pytest.raises(qplan.FieldError, match="did you mean 'writer'"):
        Novel.objects.select_for_update(of=("writr",))
    with pytest.raises(qplan.FieldError, match="Only relational fields"):
        Writer.objects.select_for_update(of=("novel",))
    with pytest.raises(qplan.PlanError, match="tuple of names"):
        Novel.objects.select_for_update(of="self")
    with pytest.raises(qplan.PlanError, match="True or False"):
        Novel.objects.select_for_update(nowait="yes")


def test_the_record_round_trips():
    plan = Novel.objects.select_related("writer").select_for_update(skip_locked=True,
                                                                   of=("self", "writer"))
    assert plan.records[-1] == ("select_for_update", False, True, ("self", "writer"), False)
    assert pickle.loads(pickle.dumps(plan)) == plan and qplan.loads(qplan.dumps(plan)) == plan
    assert from_json(plan.to_json()) == plan and plan.using("x").records == plan.records
    assert repr(plan).endswith(".select_for_update(skip_locked=True, of=('self', 'writer'))>")


def test_inside_atomic_only_and_where_the_backend_locks(rel_db):
    fill()
    plan = Novel.objects.filter(title="A1").select_for_update()
    if not backend().SELECT_FOR_UPDATE:
        with pytest.raises(qplan.NotSupportedError):
            with qplan.atomic():
                list(plan)
        return
    with pytest.raises(qplan.TransactionManagementError, match="outside of a transaction"):
        list(plan)
    with pytest.raises(qplan.TransactionManagementError):
        plan.get()
    joined = Novel.objects.select_related("writer").filter(writer__name="Ann")
    of = () if backend().LOCKS_OUTER_JOINS else ("self",)  # PostgreSQL: the own rows only
    with qplan.atomic():
        assert [n.title for n in plan] == ["A1"]
        assert plan.exists() and [n.title for n in plan.iterator()] == ["A1"]
        assert joined.select_for_update(of=of).get(title="A2").writer.name == "Ann"


def _hold_lock(pk: int, locked: threading.Event, release: threading.Event,
               errors: list) -> None:
    try:
        with qplan.atomic():
            list(Novel.objects.filter(pk=pk).select_for_update())  # by key: that row only
            locked.set()
            release.wait(10)
    except Exception as exc:  # pragma: no cover - reported by the test
        errors.append(exc)
        locked.set()
    finally:
        qplan.connections.close_all()


def test_a_row_lock_blocks_nowait_raises_skip_locked_skips(rel_db):
    if not backend().SELECT_FOR_UPDATE:
        with pytest.raises(qplan.NotSupportedError, match="no row locks"):
            Novel.objects.select_for_update(nowait=True).compile()
        return
    options = backend().SELECT_FOR_UPDATE_OPTIONS
    fill()
    locked, release, errors = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold_lock, args=(Novel.objects.get(title="A1").pk, locked, release, errors))
    holder.start()
    try:
        assert locked.wait(10) and not errors
        if "nowait" in options:
            with pytest.raises(qplan.DatabaseError):
                with qplan.atomic():
                    list(Novel.objects.filter(title="A1").select_for_update(nowait=True))
        if "skip_locked" in options:
            with qplan.atomic():
                free = Novel.objects.order_by("title").select_for_update(skip_locked=True)
                assert [n.title for n in free] == ["A2"]
        threading.Timer(0.4, release.set).start()
        start = time.monotonic()
        with qplan.atomic():  # waits for the holder's commit, then locks the row itself
            assert [n.title for n in Novel.objects.filter(title="A1").select_for_update()] == ["A1"]
        assert time.monotonic() - start >= 0.3
    finally:
        release.set()
        holder.join(10)
    assert not errors


class ReadsElsewhere:
    """Reads go to ``replica``, writes to ``default`` (a primary/replica split)."""

    def db_for_read(self, plan, **hints):
        return "replica"

    def db_for_write(self, plan, **hints):
        return "default"


def test_locking_reads_go_to_the_write_alias(databases):
    databases(default="postgresql", replica="sqlite")
    qplan.create_tables([Writer], using="default")
    try:
        Writer.objects.using("default").create(name="on the primary")
        qplan.configure(routers=[ReadsElsewhere()])
        with qplan.atomic(using="default"):
            assert [w.name for w in Writer.objects.select_for_update()] == ["on the primary"]
        assert qplan.routing.route(Writer.objects.all()) == "replica"
    finally:
        qplan.configure(routers=[])
        qplan.drop_tables([Writer], using="default", missing_ok=True)
