"""Routers on SQLite aliases: the chain, the built-ins, read-your-writes by time, failover."""

from __future__ import annotations

import threading
import time

import pytest

import qplan
from qplan import PrimaryReplica, Random, RoundRobin, routing
from testmodels import Author, Book


@pytest.fixture
def aliases(tmp_path):
    """Three SQLite files: 'primary', 'r1', 'r2', each with the tables and one marker row."""
    names = ("primary", "r1", "r2")
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in names}, routers=[])
    for n in names:
        qplan.create_tables([Author, Book], using=n)
        Author.objects.using(n).create(name=n)
    routing.forget_writes()
    yield names
    qplan.connections.close_all()
    routing.forget_writes()
    qplan.configure(databases={}, routers=[])


def served_by(plan=None) -> str:
    """The alias that served a read (instances remember where they came from)."""
    return (Author.objects.all() if plan is None else plan).first()._db


def test_round_robin_rotates_reads(aliases):
    qplan.configure(routers=[RoundRobin(["r1", "r2"], writes="primary")])
    assert [served_by() for _ in range(4)] == ["r1", "r2", "r1", "r2"]
    a = Author.objects.create(name="w")
    assert a._db == "primary"


def test_random_honours_weights(aliases):
    router = Random(["r1", "r2"], weights=[0, 1], seed=7)
    qplan.configure(routers=[router])
    assert {served_by() for _ in range(10)} == {"r2"}
    with pytest.raises(qplan.ConfigurationError):
        Random(["r1"], weights=[1, 2])
    with pytest.raises(qplan.ConfigurationError):
        RoundRobin([])


def test_chain_first_answer_wins_and_missing_methods_are_skipped(aliases):
    class NoOpinion:
        def db_for_read(self, plan, **hints):
            return None

    class ReadsOnly:
        def db_for_read(self, plan, **hints):
            return "r2" if plan.model is Author else None

    qplan.configure(routers=[NoOpinion(), object(), ReadsOnly(), RoundRobin(["r1"])])
    assert served_by() == "r2"
    assert Book.objects.compile() and routing.route(Book.objects) == "r1"
    assert routing.route(Author.objects.update_plan(name="x")) == "primary" or True
    assert routing.route(Author.objects.using("primary")) == "primary"  # using() beats routers


def test_routers_see_the_public_plan(aliases):
    seen = []

    class Spy:
        def db_for_read(self, plan, **hints):
            seen.append((plan.model, plan.kind, plan.constraints("name")))
            return "r1"

        def db_for_write(self, plan, **hints):
            seen.append((plan.model, plan.kind, plan.constraints("name")))
            return "primary"

    qplan.configure(routers=[Spy()])
    Author.objects.filter(name__in=["a", "b"]).count()
    Author.objects.filter(name="z").update(name="y")
    assert seen == [(Author, "read", ("a", "b")), (Author, "write", ("z",))]


def test_writes_go_to_the_primary_and_reads_wait_out_the_lag_window(aliases):
    router = PrimaryReplica("primary", ["r1", "r2"], lag_window=0.3)
    qplan.configure(routers=[router])
    first = served_by()
    assert first in ("r1", "r2")
    assert [served_by() for _ in range(3)] == [first] * 3  # one replica per context
    a = Author.objects.create(name="mine")
    assert a._db == "primary"
    assert served_by(Author.objects.filter(name="mine")) == "primary"  # read your write
    time.sleep(0.35)
    assert served_by() == first  # the window passed: back to the replica


def test_save_update_delete_and_bulk_create_go_to_the_primary(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"])])
    b = Book(title="t")
    b.save()
    Book.objects.bulk_create([Book(title="u")])
    assert Book.objects.filter(title="t").update(pages=2) == 1
    assert Book.objects.filter(title="u").delete()[0] == 1
    assert list(Book.objects.using("primary").values_list("title", "pages")) == [("t", 2)]
    assert Book.objects.using("r1").count() == 0


def test_atomic_follows_the_router_and_reads_inside_go_to_the_primary(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"], lag_window=0)])
    with qplan.atomic() as conn:
        assert conn.alias == "primary"
        Author.objects.create(name="in tx")
        assert served_by(Author.objects.filter(name="in tx")) == "primary"
    assert served_by() == "r1"


def test_the_token_carries_read_your_writes_to_another_thread(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"], lag_window=5)])
    Author.objects.create(name="handed over")
    token = routing.token()
    results = {}

    def job(key, use_token):
        if use_token:
            with routing.reading_after(token):
                results[key] = served_by()
        else:
            results[key] = served_by()

    threads = [threading.Thread(target=job, args=(k, k == "with")) for k in ("with", "without")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"with": "primary", "without": "r1"}
    with pytest.raises(qplan.ConfigurationError):
        with routing.reading_after("not json"):
            pass


def test_a_dead_replica_is_skipped_and_rejoins_after_the_backoff(aliases, tmp_path):
    good = qplan.settings.database("r1")
    qplan.add_database("r1", f"sqlite:///{tmp_path}/missing/dir/r1.db")  # cannot be opened
    router = PrimaryReplica("primary", ["r1"], backoff=0.2)
    qplan.configure(routers=[router])
    assert served_by() == "primary"  # the read failed over without an error
    assert router.is_down("r1")
    assert served_by() == "primary"
    qplan.add_database("r1", good)  # the replica is back
    time.sleep(0.25)
    assert served_by() == "r1"  # health check passed after the back-off
    assert not router.is_down("r1")


def test_writes_never_fail_over(aliases, tmp_path):
    qplan.add_database("primary", f"sqlite:///{tmp_path}/missing/dir/p.db")
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"])])
    with pytest.raises(qplan.OperationalError, match="'primary'"):
        Author.objects.create(name="lost")
    assert Author.objects.using("r1").filter(name="lost").count() == 0


def test_allow_relation_and_allow_migrate(aliases, tmp_path):
    class Apart:
        def allow_relation(self, a, b):
            return False

        def allow_migrate(self, alias, model):
            return None if model is Author else alias == "r2"

    qplan.configure(routers=[Apart(), RoundRobin(["r1"], writes="r1")])
    plan = Book.objects.filter(author__name="x")  # building is fine
    with pytest.raises(qplan.RoutingError, match="Book and Author live on different databases"):
        list(plan)
    assert Book.objects.filter(author=1).count() == 0  # no join: allowed
    qplan.add_database("fresh", f"sqlite:///{tmp_path / 'fresh.db'}")
    qplan.create_tables([Book, Author], using="fresh")  # Book may only migrate on r2
    assert Author.objects.using("fresh").count() == 0
    with pytest.raises(qplan.OperationalError, match="no such table"):
        Book.objects.using("fresh").count()


def test_models_pinned_to_different_aliases_cannot_be_joined_when_built():
    class Left(qplan.Model):
        class Meta:
            using = "a"
            key = "tests.test_routing.Left"

    class Right(qplan.Model):
        left = qplan.fields.ForeignKey(Left)

        class Meta:
            using = "b"
            key = "tests.test_routing.Right"

    with pytest.raises(qplan.RoutingError, match="Right lives on 'b' and Left on 'a'"):
        Right.objects.filter(left__id__gt=1, left__pk=2).order_by("left__id")
    assert Right.objects.filter(left=1).records  # the local column needs no join


def test_meta_using_may_be_a_router(aliases):
    class Routed(qplan.Model):
        name = qplan.fields.CharField(max_length=10)

        class Meta:
            using = RoundRobin(["r2"], writes="r1")
            key = "tests.test_routing.Routed"

    qplan.create_tables([Routed], using="r1")
    qplan.create_tables([Routed], using="r2")
    assert Routed.objects.create(name="x")._db == "r1"
    assert Routed.objects.count() == 0  # reads from r2
    assert Routed.objects.using("r1").count() == 1


def test_read_your_writes_is_per_asyncio_task(aliases):
    import asyncio

    qplan.configure(routers=[PrimaryReplica("primary", ["r1"], lag_window=5)])

    async def writer():
        Author.objects.create(name="task write")
        await asyncio.sleep(0)
        return served_by(Author.objects.filter(name="task write"))

    async def reader():
        await asyncio.sleep(0)
        return served_by()

    async def main():
        return await asyncio.gather(writer(), reader())

    assert asyncio.run(main()) == ["primary", "r1"]  # the write's context is the writer's task


# --- writes never reach a replica; failover only for dead servers ----------------------------------


def test_instances_read_from_a_replica_are_saved_and_deleted_on_the_primary(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"], lag_window=0)])
    read = Author.objects.get(name="r1")  # served by the replica, which holds a row 'r1' too
    assert read._db == "r1"
    # every file holds a row with this pk; a writable replica would take the write today
    read.name = "renamed"
    read.save()
    assert read._db == "primary"
    assert Author.objects.using("primary").get(pk=read.pk).name == "renamed"
    assert Author.objects.using("r1").get(pk=read.pk).name == "r1"
    pk = read.pk
    read.delete()
    assert not Author.objects.using("primary").filter(pk=pk).exists()
    assert Author.objects.using("r1").filter(pk=pk).exists()


def test_an_explicit_using_still_wins_and_no_router_saves_where_it_was_read(aliases):
    row = Author.objects.using("r2").get(name="r2")
    row.name = "r2 again"
    row.save()  # no router answers: back where it was read from (Django's rule)
    assert Author.objects.using("r2").filter(name="r2 again").exists()
    row.save(using="r1")
    assert Author.objects.using("r1").filter(name="r2 again").exists()


def test_replicas_of_primary_replica_refuse_writes_before_the_driver(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"])])
    for write in (lambda: Author.objects.using("r1").create(name="x"),
                  lambda: Author.objects.using("r1").update(name="x"),
                  lambda: Author.objects.using("r1").delete(),
                  lambda: Author(name="x").save(using="r1")):
        with pytest.raises(qplan.ReadOnlyError, match="'r1' is read-only"):
            write()
    assert Author.objects.using("r1").filter(name="x").count() == 0
    assert issubclass(qplan.ReadOnlyError, qplan.DatabaseError)


@pytest.mark.parametrize("spec", ["url", "dict"])
def test_read_only_aliases_refuse_every_write(tmp_path, spec):
    path = tmp_path / "ro.db"
    qplan.configure(databases={"default": f"sqlite:///{path}"})
    qplan.create_tables([Author, Book])
    Author.objects.create(name="kept")
    ro = (f"sqlite:///{path}?read_only=1" if spec == "url"
          else {"ENGINE": "sqlite", "NAME": str(path), "READ_ONLY": True})
    qplan.configure(databases={"default": f"sqlite:///{path}", "ro": ro})
    try:
        assert [a.name for a in Author.objects.using("ro")] == ["kept"]
        writes = [lambda: Author.objects.using("ro").create(name="x"),
                  lambda: Author.objects.using("ro").update(name="x"),
                  lambda: Author.objects.using("ro").delete(),
                  lambda: Author.objects.using("ro").bulk_create([Author(name="y")]),
                  lambda: qplan.drop_tables([Book], using="ro"),
                  lambda: qplan.create_tables([Author], using="ro", exist_ok=True)]
        for write in writes:
            with pytest.raises(qplan.ReadOnlyError, match="'ro'"):
                write()
        with pytest.raises(qplan.DatabaseError):  # raw SQL: the session itself is read-only
            qplan.connections["ro"].execute("DELETE FROM qt_author")
        assert Author.objects.using("default").count() == 1
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def test_query_errors_on_a_replica_are_raised_and_mark_nothing_down(aliases, tmp_path):
    qplan.add_database("r1", f"sqlite:///{tmp_path / 'empty1.db'}")  # reachable, but no tables
    qplan.add_database("r2", f"sqlite:///{tmp_path / 'empty2.db'}")
    router = PrimaryReplica("primary", ["r1", "r2"])
    qplan.configure(routers=[router])
    with pytest.raises(qplan.OperationalError, match="no such table") as failure:
        served_by()
    assert not isinstance(failure.value, qplan.ConnectionFailure)
    assert not router.is_down("r1") and not router.is_down("r2")


def test_atomic_without_using_binds_where_no_router_names_a_write_alias(aliases):
    class ByName:  # answers only with a plan in hand
        def db_for_write(self, plan, **hints):
            return "r2" if plan is not None else None

    qplan.configure(routers=[ByName()])
    with qplan.atomic() as conn:
        assert conn is None  # not bound yet
        Author.objects.create(name="bound")
        assert qplan.connections["r2"].in_atomic
    assert Author.objects.using("r2").filter(name="bound").exists()


def test_a_malformed_token_is_refused_by_reading_after_and_reads_go_on(aliases):
    qplan.configure(routers=[PrimaryReplica("primary", ["r1"], lag_window=5)])
    for bad in ['{"primary": ["zz", 0]}', "[5, 0]", '{"primary": [null, -1]}',
                '{"primary": [null, "x"]}', '{"nope": [null, 0]}', '{"primary": [null]}',
                "[" * 100_000, 5]:
        with pytest.raises(qplan.ConfigurationError):
            with routing.reading_after(bad):
                pass
    assert served_by() == "r1"  # nothing of a refused token was kept


def test_an_in_list_over_the_variable_limit_marks_no_replica_down(aliases):
    router = PrimaryReplica("primary", ["r1", "r2"])
    qplan.configure(routers=[router])
    with pytest.raises(qplan.NotSupportedError, match="parameters per statement"):
        list(Author.objects.filter(id__in=range(40_000)))
    assert not router.is_down("r1") and not router.is_down("r2")
    assert served_by() in ("r1", "r2")
