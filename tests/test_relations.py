"""``qplan.relations``: what a model's relations are, both ways, and the declarations
qplan refuses when the class is defined."""

from __future__ import annotations

import pytest

import qplan
from qplan import Model, fields
from qplan.relations import relations, reverse_accessors
from relmodels import Club, Genre, Membership, Novel, NovelGenres, Writer


def test_every_relation_is_described_both_ways():
    rels = relations(Writer._meta)
    assert {name: (rel.kind, rel.many, rel.accessor) for name, rel in rels.items()} == {
        "mentor": ("forward", False, "mentor"),
        "mentees": ("reverse", True, "mentees"),
        "bio": ("reverse", False, "bio"),
        "novel": ("reverse", True, "novel_set"),
        "edited_novel": ("reverse", True, "edited"),
        "clubs": ("m2m_reverse", True, "clubs"),
        "membership": ("reverse", True, "membership_set"),
    }
    genres = relations(Novel._meta)["genres"]
    assert [(s.left_column, s.right.model, s.right_column) for s in genres.steps] == [
        ("id", NovelGenres, "novel_id"), ("genre_id", Genre, "id")]
    assert relations(Genre._meta)["novel"].kind == "m2m_reverse"
    assert relations(Club._meta)["members"].steps[0].right.model is Membership
    assert set(reverse_accessors(Writer._meta)) >= {"novel_set", "edited", "bio", "clubs"}


def test_the_auto_through_model_is_a_model_with_two_keys_each_pair_once():
    meta = NovelGenres._meta
    assert meta.db_table == "rel_novel_genres" and meta.auto_created is Novel
    assert [f.column for f in meta.fields] == ["id", "novel_id", "genre_id"]
    assert meta.uniques == (("rel_novel_genres_novel_id_genre_id_uniq", ("novel_id", "genre_id")),)
    assert Novel.genres.through is NovelGenres


def test_symmetrical_is_refused_for_a_relation_to_another_model():
    with pytest.raises(qplan.FieldError, match="symmetrical=True needs a relation to 'self'"):
        class Stray(Model):
            genres = fields.ManyToManyField("Genre", symmetrical=True)

            class Meta:
                db_table = "rel_test_stray"

    class Follower(Model):
        follows = fields.ManyToManyField("self", symmetrical=False, related_name="followers")

        class Meta:
            db_table = "rel_test_follower"

    rels = relations(Follower._meta)
    assert (rels["follows"].kind, rels["followers"].kind) == ("m2m", "m2m_reverse")
    through = Follower._meta.many_to_many[0].through
    assert [f.column for f in through._meta.fields] == ["id", "from_follower_id", "to_follower_id"]


@pytest.mark.parametrize("bad", ["a__b", "_x", "1x", "has space", 5])
def test_reverse_names_must_be_identifiers_without_double_underscores(bad):
    with pytest.raises(qplan.FieldError, match="related_name"):
        fields.ForeignKey(Writer, related_name=bad)
    with pytest.raises(qplan.FieldError, match="related_query_name"):
        fields.ManyToManyField(Genre, related_query_name=bad)


def test_a_reverse_name_clashing_with_a_field_is_a_configuration_error():
    class Shelf(Model):
        name = fields.CharField(max_length=10)

        class Meta:
            db_table = "rel_test_shelf"

    class Box(Model):
        shelf = fields.ForeignKey(Shelf, related_query_name="name")

        class Meta:
            db_table = "rel_test_box"

    with pytest.raises(qplan.ConfigurationError, match="clashes"):
        relations(Shelf._meta)
