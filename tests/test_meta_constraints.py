"""``Meta.unique_together``, ``Meta.indexes`` and ``Meta.constraints`` in ``create_tables``
on every backend: the DDL holds them, a violation raises ``IntegrityError``, and mistakes
fail when the class is defined."""

from __future__ import annotations

import pytest

import qplan
from qplan import Index, Model, UniqueConstraint, fields
from qplan.backends import get as get_backend


class Edition(Model):
    title = fields.CharField(max_length=100)
    year = fields.IntegerField()
    isbn = fields.CharField(max_length=20, null=True)
    lang = fields.CharField(max_length=5, default="en")
    blurb = fields.TextField(default="")

    class Meta:
        key = "tests.meta_constraints.Edition"
        db_table = "qt_edition"
        unique_together = [("title", "year")]
        indexes = [("year", "lang"), Index(fields=["blurb", "lang"], name="qt_edition_blurb")]
        constraints = [UniqueConstraint(fields=["isbn", "lang"], name="qt_edition_isbn_lang")]


@pytest.fixture
def editions(any_db):
    qplan.create_tables([Edition])
    try:
        yield any_db
    finally:
        qplan.connections.close_all()
        qplan.drop_tables([Edition])


def test_the_ddl_holds_the_constraints_and_indexes(editions):
    sql = "\n".join(get_backend(editions).create_table(Edition._meta))
    for name in ("qt_edition_title_year_uniq", "qt_edition_year_lang_idx", "qt_edition_blurb",
                 "qt_edition_isbn_lang"):
        assert name in sql
    assert sql.count("UNIQUE") == 2 and sql.count("CREATE INDEX") == 2


def test_unique_together_and_unique_constraints_refuse_duplicates(editions):
    Edition.objects.create(title="a", year=1, isbn="x")
    Edition.objects.create(title="a", year=2, isbn="x", lang="fr")  # differs in one column
    with pytest.raises(qplan.IntegrityError):
        Edition.objects.create(title="a", year=1)
    with pytest.raises(qplan.IntegrityError):
        Edition.objects.create(title="b", year=1, isbn="x")
    Edition.objects.create(title="c", year=1, isbn=None)
    Edition.objects.create(title="d", year=1, isbn=None)  # NULLs never clash
    assert Edition.objects.count() == 4
    assert Edition.objects.filter(year=1, lang="en").count() == 3  # the indexes serve reads


def test_create_tables_again_with_exist_ok(editions):
    qplan.create_tables([Edition], exist_ok=True)  # the indexes are guarded too
    assert Edition.objects.count() == 0


@pytest.mark.parametrize("meta, match", [
    ({"unique_together": [("title", "nope")]}, "nope"),
    ({"indexes": [("nope",)]}, "nope"),
    ({"indexes": [Index(fields=["title"], name="same"), Index(fields=["year"], name="same")]},
     "used twice"),
    ({"indexes": ["title"]}, "Index"),
    ({"constraints": [Index(fields=["title"])]}, "UniqueConstraint"),
])
def test_mistakes_fail_when_the_class_is_defined(meta, match):
    with pytest.raises(qplan.FieldError, match=match):
        type("Bad", (Model,), {"__module__": __name__,
                               "title": fields.CharField(max_length=10),
                               "year": fields.IntegerField(),
                               "Meta": type("Meta", (), {"key": "tests.meta_constraints.Bad",
                                                         **meta})})


@pytest.mark.parametrize("name", ["1x", "_x", "a-b", "x" * 31, "", None])
def test_invalid_names_are_refused(name):
    with pytest.raises(qplan.FieldError, match="not valid"):
        UniqueConstraint(fields=["a"], name=name)
    if name is not None:
        with pytest.raises(qplan.FieldError, match="not valid"):
            Index(fields=["a"], name=name)
