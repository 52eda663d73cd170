"""The models the relation tests run on: foreign keys both ways, a one-to-one, a
self-reference, many-to-many with an auto-created and an explicit through model."""

from __future__ import annotations

from qplan import Model, fields


class Writer(Model):
    name = fields.CharField(max_length=50)
    age = fields.IntegerField(default=0)
    mentor = fields.ForeignKey("self", null=True, on_delete=fields.SET_NULL,
                               related_name="mentees")

    class Meta:
        db_table = "rel_writer"


class Bio(Model):
    """One per writer at most: ``writer.bio``, ``Writer.objects.filter(bio__text=...)``."""

    writer = fields.OneToOneField(Writer, on_delete=fields.CASCADE)
    text = fields.TextField(default="")

    class Meta:
        db_table = "rel_bio"


class Genre(Model):
    name = fields.CharField(max_length=30, unique=True)

    class Meta:
        db_table = "rel_genre"


class Novel(Model):
    """``writer.novel_set`` / ``novel__``; ``writer.edited`` / ``edited_novel__``;
    ``novel.genres`` and ``genre.novel_set`` / ``novel__`` (auto through table)."""

    title = fields.CharField(max_length=100)
    pages = fields.IntegerField(default=0)
    writer = fields.ForeignKey(Writer, null=True, on_delete=fields.CASCADE)
    editor = fields.ForeignKey(Writer, null=True, on_delete=fields.SET_NULL,
                               related_name="edited", related_query_name="edited_novel")
    genres = fields.ManyToManyField(Genre)

    class Meta:
        db_table = "rel_novel"


class Review(Model):
    novel = fields.ForeignKey(Novel, on_delete=fields.CASCADE, related_name="reviews")
    stars = fields.IntegerField()

    class Meta:
        db_table = "rel_review"


class Club(Model):
    """Members through an explicit model: ``club.members``, ``writer.clubs``."""

    name = fields.CharField(max_length=30)
    members = fields.ManyToManyField(Writer, through="Membership", related_name="clubs")

    class Meta:
        db_table = "rel_club"


class Membership(Model):
    writer = fields.ForeignKey(Writer, on_delete=fields.CASCADE)
    club = fields.ForeignKey(Club, on_delete=fields.CASCADE)
    role = fields.CharField(max_length=20, default="member")

    class Meta:
        db_table = "rel_membership"


NovelGenres = Novel._meta.many_to_many[0].through  # the auto-created through model

ALL = [Writer, Bio, Genre, Novel, NovelGenres, Review, Club, Membership]
