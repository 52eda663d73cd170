"""prefetch_related() and qplan.Prefetch (issue 12), on every backend: the same objects as
without it, one query per relation level whatever the row count, caches filled so that
reading them makes no query, Prefetch querysets and to_attr, nested lookups, each query
routed on its own (two aliases), mistakes at the building line, and plans that round-trip."""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import F, FieldError, PlanError, Prefetch
from qplan.execution import Engine
from relmodels import Bio, Club, Genre, Membership, Novel, NovelGenres, Review, Writer


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``(model name, alias)`` of every statement the engine runs from now on."""
    log: list[tuple[str, str]] = []
    original = Engine.run

    def run(self, plan, conn):
        log.append((plan.model.__name__, conn.alias))
        return original(self, plan, conn)

    monkeypatch.setattr(Engine, "run", run)
    return log


def populate(n: int, using: str | None = None) -> None:
    """``n`` writers (every even one mentored by the one before), two novels each (edited by
    the next writer), a review of each novel of an even writer, a bio for every third
    writer, three genres (novel k in genres k % 3 and, when k is even, (k + 1) % 3) and two
    clubs (writer i in club i % 2 + 1, role by parity)."""
    root = Writer.objects if using is None else Writer.objects.using(using)
    def objects(model):
        return model.objects if using is None else model.objects.using(using)
    for parity in (1, 0):  # mentors first: DuckDB checks foreign keys row by row
        root.bulk_create([Writer(id=i, name=f"w{i:03}", age=20 + i % 50,
                                 mentor_id=i - 1 if i % 2 == 0 else None)
                          for i in range(1, n + 1) if i % 2 == parity])
    objects(Genre).bulk_create([Genre(id=g + 1, name=f"g{g}") for g in range(3)])
    objects(Novel).bulk_create([
        Novel(id=k, title=f"n{k:03}", pages=(k * 37) % 400, writer_id=(k + 1) // 2,
              editor_id=(k + 1) // 2 % n + 1)
        for k in range(1, 2 * n + 1)])
    objects(Review).bulk_create([Review(id=k, novel_id=k, stars=k % 5 + 1)
                                 for k in range(1, 2 * n + 1) if ((k + 1) // 2) % 2 == 0])
    objects(Bio).bulk_create([Bio(id=i, writer_id=i, text=f"bio {i}")
                              for i in range(1, n + 1) if i % 3 == 0])
    links = [(k, k % 3 + 1) for k in range(1, 2 * n + 1)]
    links += [(k, (k + 1) % 3 + 1) for k in range(1, 2 * n + 1) if k % 2 == 0]
    objects(NovelGenres).bulk_create([NovelGenres(novel_id=k, genre_id=g) for k, g in links])
    objects(Club).bulk_create([Club(id=1, name="c1"), Club(id=2, name="c2")])
    objects(Membership).bulk_create([Membership(writer_id=i, club_id=i % 2 + 1,
                                                role="chair" if i % 4 == 0 else "member")
                                     for i in range(1, n + 1)])


def prefetched(obj, accessor: str) -> list:
    return obj.__dict__["_prefetched"][accessor]


def pks(objs) -> list:
    return sorted(o.pk for o in objs)


# --- the same objects as without prefetch, one query per level ------------------------------------


def test_reverse_fk_forward_and_one_to_one_give_the_same_objects(rel_db, queries):
    populate(9)
    queries.clear()
    writers = list(Writer.objects.prefetch_related("novel_set", "edited", "bio", "mentor",
                                                   "mentees").order_by("id"))
    assert len(queries) == 6  # the writers, then one query per relation
    del queries[:]
    for w in writers:
        assert pks(prefetched(w, "novel_set")) == pks(Novel.objects.filter(writer=w.pk))
        assert pks(prefetched(w, "edited")) == pks(Novel.objects.filter(editor=w.pk))
        assert pks(prefetched(w, "mentees")) == pks(Writer.objects.filter(mentor=w.pk))
        bio = Bio.objects.filter(writer=w.pk).first()
        assert w.__dict__["_cache_bio"] == bio
        if bio is not None:
            assert w.__dict__["_cache_bio"].text == bio.text
        mentor = w.__dict__["_cache_mentor"]
        assert (mentor.pk if mentor else None) == w.mentor_id
        assert mentor is None or mentor.name == Writer.objects.get(pk=w.mentor_id).name


@pytest.mark.parametrize("n", [3, 60])
def test_one_query_per_relation_level_whatever_the_row_count(rel_db, queries, n):
    populate(n)
    queries.clear()
    writers = list(Writer.objects.prefetch_related("novel_set__reviews", "mentor", "bio"))
    # writers, novels, reviews of those novels, mentors, bios
    assert len(queries) == 5
    assert len(writers) == n


def test_reading_prefetched_relations_makes_no_query(rel_db, queries):
    populate(8)
    queries.clear()
    novels = list(Novel.objects.prefetch_related("writer__mentor", "reviews").order_by("id"))
    assert len(queries) == 4
    del queries[:]
    seen = []
    for novel in novels:
        writer = novel.writer  # the ForwardRelation descriptor reads the cache
        seen.append((novel.pk, writer.name, writer.mentor.name if writer.mentor else None,
                     [r.stars for r in prefetched(novel, "reviews")]))
        for review in prefetched(novel, "reviews"):
            assert review.novel is novel  # the reverse side is filled too
    assert queries == []
    expected = [(k, f"w{(k + 1) // 2:03}",
                 f"w{(k + 1) // 2 - 1:03}" if ((k + 1) // 2) % 2 == 0 else None,
                 [k % 5 + 1] if ((k + 1) // 2) % 2 == 0 else [])
                for k in range(1, 17)]
    assert seen == expected


def test_a_forward_one_to_one_fills_both_sides(rel_db, queries):
    populate(6)
    queries.clear()
    bios = list(Bio.objects.order_by("id").prefetch_related("writer__novel_set"))
    assert len(queries) == 3
    del queries[:]
    assert [(b.writer.name, pks(prefetched(b.writer, "novel_set"))) for b in bios] == \
        [("w003", [5, 6]), ("w006", [11, 12])]
    assert all(b.writer.__dict__["_cache_bio"] is b for b in bios)
    assert queries == []


def test_prefetch_is_ignored_where_django_ignores_it(rel_db, queries):
    populate(4)
    queries.clear()
    plan = Writer.objects.prefetch_related("novel_set")
    assert plan.count() == 4
    assert plan.exists()
    assert sorted(plan.values_list("name", flat=True)) == ["w001", "w002", "w003", "w004"]
    assert plan.aggregate(n=qplan.Count("id")) == {"n": 4}
    assert len(queries) == 4
    del queries[:]
    assert plan.filter(name="nobody").prefetch_related("bio").first() is None
    assert len(queries) == 1  # no rows: nothing to prefetch, no query
    del queries[:]
    one = plan.get(pk=2)
    assert pks(prefetched(one, "novel_set")) == [3, 4] and len(queries) == 2


# --- Prefetch objects --------------------------------------------------------------------------


def test_prefetch_queryset_filters_and_orders_and_to_attr_stores_a_list(rel_db, queries):
    populate(6)
    queries.clear()
    long_first = Novel.objects.filter(pages__gte=100).order_by("-pages")
    writers = list(Writer.objects.order_by("id").prefetch_related(
        Prefetch("novel_set", queryset=long_first),
        Prefetch("novel_set", queryset=Novel.objects.filter(pages__lt=100), to_attr="short"),
        Prefetch("bio", to_attr="the_bio")))
    assert len(queries) == 4
    for w in writers:
        mine = list(Novel.objects.filter(writer=w.pk))
        assert [n.pk for n in prefetched(w, "novel_set")] == \
            [n.pk for n in sorted(mine, key=lambda n: -n.pages) if n.pages >= 100]
        assert pks(w.short) == pks(n for n in mine if n.pages < 100)
        assert type(w.short) is list and "short" not in w.__dict__.get("_prefetched", {})
        assert (w.the_bio.pk if w.the_bio else None) == (w.pk if w.pk % 3 == 0 else None)


def test_nested_lookups_run_on_the_prefetched_objects(rel_db, queries):
    populate(6)
    queries.clear()
    writers = list(Writer.objects.order_by("id").prefetch_related(
        Prefetch("novel_set", queryset=Novel.objects.filter(pages__gte=100), to_attr="long"),
        "long__reviews", "mentees__novel_set", "novel_set"))
    # writers; long novels; their reviews; mentees; the mentees' novels; novel_set
    assert len(queries) == 6
    del queries[:]
    for w in writers:
        for novel in w.long:
            assert novel.pages >= 100
            assert pks(prefetched(novel, "reviews")) == pks(Review.objects.filter(novel=novel.pk))
        for mentee in prefetched(w, "mentees"):
            assert pks(prefetched(mentee, "novel_set")) == pks(Novel.objects.filter(writer=mentee.pk))
        assert pks(prefetched(w, "novel_set")) == pks(Novel.objects.filter(writer=w.pk))


def test_a_prefetch_queryset_may_prefetch_itself(rel_db, queries):
    populate(4)
    queries.clear()
    inner = Novel.objects.prefetch_related("reviews").order_by("id")
    writers = list(Writer.objects.prefetch_related(Prefetch("novel_set", queryset=inner)))
    assert len(queries) == 3
    novels = [n for w in writers for n in prefetched(w, "novel_set")]
    assert sum(len(prefetched(n, "reviews")) for n in novels) == Review.objects.count()


def test_iterator_prefetches_each_chunk(rel_db, queries):
    populate(5)
    queries.clear()
    writers = list(Writer.objects.order_by("id").prefetch_related("novel_set").iterator(2))
    assert [pks(prefetched(w, "novel_set")) for w in writers] == \
        [[2 * i - 1, 2 * i] for i in range(1, 6)]
    assert len(queries) == 3  # one prefetch per chunk of 2 (the stream is not Engine.run's)


# --- routing ------------------------------------------------------------------------------------


class NovelsElsewhere:
    """Novels and reviews on 'other', everything else where it would go."""

    def db_for_read(self, plan, **hints):
        return "other" if plan.model in (Novel, Review) else None

    def db_for_write(self, plan, **hints):
        return self.db_for_read(plan)


def test_each_prefetch_query_runs_on_the_alias_its_routers_pick(rel_db, queries, tmp_path):
    populate(4)  # on 'default'
    queries.clear()
    qplan.add_database("other", f"sqlite:///{tmp_path / 'other.db'}")
    try:
        qplan.create_tables([Writer, Novel, Review], using="other")
        Writer.objects.using("other").bulk_create([Writer(id=i, name=f"x{i}") for i in (1, 2)])
        Novel.objects.using("other").bulk_create(
            [Novel(id=101, title="elsewhere 1", writer_id=1),
             Novel(id=102, title="elsewhere 2", writer_id=2),
             Novel(id=110, title="elsewhere 3", writer_id=2)])
        qplan.configure(routers=[NovelsElsewhere()])
        del queries[:]
        writers = list(Writer.objects.order_by("id").prefetch_related("novel_set__reviews"))
        assert queries == [("Writer", "default"), ("Novel", "other"), ("Review", "other")]
        assert [pks(prefetched(w, "novel_set")) for w in writers] == [[101], [102, 110], [], []]
        # a plan pinned with using() keeps its prefetch on that alias where no router decides
        qplan.configure(routers=[])
        del queries[:]
        found = list(Writer.objects.using("other").prefetch_related("novel_set"))
        assert queries == [("Writer", "other"), ("Novel", "other")]
        assert [pks(prefetched(w, "novel_set")) for w in found] == [[101], [102, 110]]
    finally:
        qplan.configure(routers=[])
        qplan.connections.close_all()
        qplan.remove_database("other")


# --- building: mistakes where they are made, plain records ---------------------------------------


def test_unknown_lookups_fail_at_the_building_line_with_did_you_mean():
    with pytest.raises(FieldError, match="'novelset'.*did you mean 'novel_set'"):
        Writer.objects.prefetch_related("novelset")
    with pytest.raises(FieldError, match="'reviewz' on Novel.*did you mean 'reviews'"):
        Writer.objects.prefetch_related("novel_set__reviewz")
    with pytest.raises(FieldError, match="'nope' on Writer.*'writer__mentor__nope'"):
        Novel.objects.prefetch_related("writer__mentor__nope")
    with pytest.raises(FieldError, match="does not resolve to an item that supports prefetching"):
        Writer.objects.prefetch_related("name")
    with pytest.raises(FieldError, match="did you mean 'long'"):
        Writer.objects.prefetch_related(Prefetch("novel_set", to_attr="long"), "lon__reviews")
    with pytest.raises(FieldError, match="queryset is a plan of Review"):
        Writer.objects.prefetch_related(Prefetch("novel_set", queryset=Review.objects.all()))
    with pytest.raises(FieldError, match="conflicts with a field"):
        Writer.objects.prefetch_related(Prefetch("novel_set", to_attr="name"))
    with pytest.raises(FieldError, match="conflicts with a field"):  # its accessor too
        Writer.objects.prefetch_related(Prefetch("novel_set", to_attr="edited"))
    for attribute in ("pk", "save", "delete", "_db", "_cache_mentor"):  # the instance's own
        with pytest.raises(FieldError, match="conflicts with an attribute of the Writer"):
            Writer.objects.prefetch_related(Prefetch("novel_set", to_attr=attribute))
    with pytest.raises(PlanError, match="values"):
        Writer.objects.prefetch_related(Prefetch("novel_set", queryset=Novel.objects.values("id")))
    with pytest.raises(PlanError, match="takes a plan"):
        Writer.objects.prefetch_related(Prefetch("novel_set", queryset=[1, 2]))
    with pytest.raises(PlanError, match="already seen with a different queryset"):
        Writer.objects.prefetch_related("novel_set__reviews").prefetch_related(
            Prefetch("novel_set", queryset=Novel.objects.filter(pages=1)))
    with pytest.raises(PlanError):
        Writer.objects.prefetch_related(3)


def test_calls_add_up_none_clears_and_records_are_plain():
    long = Novel.objects.filter(pages__gte=100).order_by("-pages")
    plan = Writer.objects.prefetch_related("novel_set").prefetch_related(
        Prefetch("novel_set", queryset=long, to_attr="long"), Prefetch("bio"))
    assert plan.records == (
        ("prefetch_related", "novel_set"),
        ("prefetch_related", ("prefetch", "novel_set", "long", ("query", Novel._meta.key,
                                                                long.records)), "bio"),
    )
    assert plan.prefetch_related(None) == Writer.objects
    assert plan.prefetch_related() is plan
    assert plan == Writer.objects.prefetch_related("novel_set").prefetch_related(
        Prefetch("novel_set", queryset=long, to_attr="long"), "bio")
    assert hash(plan) == hash(pickle.loads(pickle.dumps(plan)))
    assert "Prefetch('novel_set', queryset=Novel.objects.filter(pages__gte=100)" in repr(plan)
    # the compiled query is the query without prefetch, for every backend
    for dialect in qplan.backends.names():
        assert plan.filter(age=3).compile(dialect) == Writer.objects.filter(age=3).compile(dialect)
    # as a subquery the prefetch is dropped (Django ignores it there too)
    inner = Writer.objects.prefetch_related("novel_set").values("id")
    assert Novel.objects.filter(writer__in=inner) == Novel.objects.filter(
        writer__in=Writer.objects.values("id"))


def test_plans_with_prefetch_round_trip_through_payloads_and_json():
    inner = Novel.objects.filter(pages__gte=F("id")).order_by("title").prefetch_related("reviews")
    plan = Writer.objects.filter(age__gt=3).prefetch_related(
        "mentor", Prefetch("novel_set", queryset=inner, to_attr="long"), "long__reviews")
    for loaded in (qplan.loads(qplan.dumps(plan)), qplan.from_json(plan.to_json()),
                   qplan.loads(pickle.dumps(plan))):
        assert loaded == plan and loaded.records == plan.records
    moved = qplan.loads(qplan.dumps(plan.using("replica")))
    assert moved.db == "replica" and moved.records == plan.records


def test_loading_refuses_prefetch_records_the_api_would_not_build():
    good = Writer.objects.prefetch_related("novel_set")
    bad_records = [
        (("prefetch_related", "novelset"),),
        (("prefetch_related",),),
        (("prefetch_related", ("prefetch", "novel_set", None, ("query", Review._meta.key, ()))),),
        (("prefetch_related", ("prefetch", "novel_set", "x y", None)),),
        (("prefetch_related", ("prefetch", "novel_set", "pk", None)),),  # would overwrite pk
        (("prefetch_related", ("prefetch", "novel_set", "_db", None)),),
        (("prefetch_related", ("prefetch", "novel_set", None, None)),),  # API writes 'novel_set'
        (("prefetch_related", ("prefetch", "novel_set", "n", ("query", Novel._meta.key,
                                                             (("count",),)))),),
    ]
    for records in bad_records:
        forged = qplan.Plan(Writer, records)
        with pytest.raises(qplan.UnsafePayload):
            qplan.loads(pickle.dumps(forged))
        with pytest.raises(qplan.UnsafePayload):
            qplan.from_json(forged.to_json())
    assert qplan.loads(pickle.dumps(good)) == good


def test_nested_queryset_records_count_against_the_payload_budget():
    from qplan.budgets import MAX_VALUES
    many = tuple(range(MAX_VALUES // 2 + 1))
    inner = Novel.objects.filter(id__in=many)
    plan = Writer.objects.filter(id__in=many).prefetch_related(
        Prefetch("novel_set", queryset=inner))
    with pytest.raises(qplan.UnsafePayload, match="binds more than"):
        qplan.loads(qplan.dumps(plan))


@pytest.mark.parametrize("rel_db", ["sqlite", "postgresql"], indirect=True)
def test_a_key_list_over_the_bind_limit_is_split(rel_db, queries, monkeypatch):
    populate(30)
    queries.clear()
    backend = qplan.connections["default"].backend
    monkeypatch.setattr("qplan.prefetching.SAFE_KEYS", 4)
    monkeypatch.setattr(type(backend), "max_params", 12)
    qplan.compile_cache.clear()
    writers = list(Writer.objects.prefetch_related(
        Prefetch("novel_set", queryset=Novel.objects.filter(pages__gte=0))))
    # 30 keys, 12 binds a statement less the pages__gte value: 11 keys a query
    assert queries == [("Writer", "default")] + [("Novel", "default")] * 3
    for w in writers:
        assert pks(prefetched(w, "novel_set")) == [2 * w.pk - 1, 2 * w.pk]
    qplan.compile_cache.clear()


# --- many-to-many, both ways, auto and explicit through models ------------------------------------


def genres_of(novel_pk: int) -> list[int]:
    return sorted({novel_pk % 3 + 1} | ({(novel_pk + 1) % 3 + 1} if novel_pk % 2 == 0 else set()))


@pytest.mark.parametrize("n", [3, 40])
def test_many_to_many_both_ways_one_query_each(rel_db, queries, n):
    populate(n)
    queries.clear()
    novels = list(Novel.objects.order_by("id").prefetch_related("genres__novel_set"))
    genres = list(Genre.objects.order_by("id").prefetch_related("novel_set"))
    writers = list(Writer.objects.order_by("id").prefetch_related("clubs__members"))
    clubs = list(Club.objects.order_by("id").prefetch_related("members", "membership_set"))
    assert len(queries) == 3 + 2 + 3 + 3  # the same whatever n
    del queries[:]
    for novel in novels:
        assert pks(prefetched(novel, "genres")) == genres_of(novel.pk)
        for genre in prefetched(novel, "genres"):  # nested: every copy of a genre is filled
            assert pks(prefetched(genre, "novel_set")) == \
                [k for k in range(1, 2 * n + 1) if genre.pk in genres_of(k)]
    for genre in genres:
        assert pks(prefetched(genre, "novel_set")) == \
            [k for k in range(1, 2 * n + 1) if genre.pk in genres_of(k)]
    for writer in writers:
        [club] = prefetched(writer, "clubs")
        assert club.pk == writer.pk % 2 + 1
        assert pks(prefetched(club, "members")) == \
            [i for i in range(1, n + 1) if i % 2 + 1 == club.pk]
    for club in clubs:
        assert pks(prefetched(club, "members")) == \
            sorted(m.writer_id for m in prefetched(club, "membership_set"))
        for member in prefetched(club, "members"):
            assert "_prefetch_source" not in member.__dict__
    assert queries == []


def test_many_to_many_with_a_prefetch_queryset_and_to_attr(rel_db, queries):
    populate(5)
    queries.clear()
    novels = list(Novel.objects.order_by("id").prefetch_related(
        Prefetch("genres", queryset=Genre.objects.exclude(name="g0").order_by("-name"),
                 to_attr="named")))
    assert len(queries) == 2
    for novel in novels:
        assert [g.pk for g in novel.named] == sorted(
            (g for g in genres_of(novel.pk) if g != 1), reverse=True)


def test_related_managers_answer_from_the_prefetched_caches(rel_db, queries):
    populate(6)
    queries.clear()
    writers = list(Writer.objects.order_by("id").prefetch_related(
        "novel_set__genres", "bio", "clubs", "mentor"))
    assert len(queries) == 6
    del queries[:]
    seen = [(w.pk, pks(w.novel_set.all()),
             [pks(n.genres.all()) for n in sorted(w.novel_set.all(), key=lambda n: n.pk)],
             w.bio.pk if w.pk % 3 == 0 else None, [c.pk for c in w.clubs.all()],
             w.mentor.pk if w.mentor else None) for w in writers]
    for w in writers:
        if w.pk % 3:
            with pytest.raises(Writer.bio.RelatedObjectDoesNotExist):
                w.bio
    assert queries == []
    assert seen == [(i, [2 * i - 1, 2 * i], [genres_of(2 * i - 1), genres_of(2 * i)],
                     i if i % 3 == 0 else None, [i % 2 + 1], i - 1 if i % 2 == 0 else None)
                    for i in range(1, 7)]


def test_levels_select_related_already_filled_are_not_fetched_again(rel_db, queries):
    populate(4)
    queries.clear()
    novels = list(Novel.objects.order_by("id").select_related("writer")
                  .prefetch_related("writer", "writer__novel_set"))
    assert len(queries) == 2  # the joined novels, then the writers' novels
    del queries[:]
    assert [pks(n.writer.novel_set.all()) for n in novels] == \
        [[2 * ((k + 1) // 2) - 1, 2 * ((k + 1) // 2)] for k in range(1, 9)]
    assert queries == []
