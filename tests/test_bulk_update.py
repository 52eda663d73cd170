"""``bulk_update`` and ``in_bulk`` as Django 5.2 answers them, on every backend."""

from __future__ import annotations

import pytest

import qplan
from testmodels import Author, Book


@pytest.fixture
def books(any_db):
    ann, bob = Author.objects.bulk_create([Author(name="ann", email="a@x"),
                                          Author(name="bob", email="b@x")])
    return Book.objects.bulk_create([Book(title=f"t{i}", pages=i, author=ann) for i in range(5)]), \
        (ann, bob)


def test_bulk_update_writes_the_named_fields_and_counts_matched_rows(books):
    rows, (ann, bob) = books
    for b in rows:
        b.pages += 100
        b.title = "not written"
        b.author = bob
    assert Book.objects.bulk_update(rows, ["pages", "author"], batch_size=2) == 5
    assert sorted(Book.objects.values_list("pages", flat=True)) == [100, 101, 102, 103, 104]
    assert set(Book.objects.values_list("title", flat=True)) == {f"t{i}" for i in range(5)}
    assert set(Book.objects.values_list("author", flat=True)) == {bob.pk}


def test_bulk_update_counts_rows_matched_not_changed(books):
    rows, _ = books
    assert Book.objects.bulk_update(rows, ["pages"]) == 5  # nothing changes, all match
    gone = rows[0]
    Book.objects.filter(pk=gone.pk).delete()
    assert Book.objects.bulk_update(rows, ["pages"]) == 4
    assert Book.objects.bulk_update([], ["pages"]) == 0


def test_bulk_update_is_all_or_nothing(books):
    rows, (ann, bob) = books
    authors = [ann, bob]
    ann.email, bob.email = "new@x", "new@x"  # the second violates the unique email
    with pytest.raises(qplan.IntegrityError):
        Author.objects.bulk_update(authors, ["email"])
    assert sorted(Author.objects.values_list("email", flat=True)) == ["a@x", "b@x"]


@pytest.mark.parametrize("fields, error", [
    (["id"], qplan.FieldError), (["pk"], qplan.FieldError), (["nope"], qplan.FieldError),
    ([], ValueError)])
def test_bulk_update_refuses_bad_fields(books, fields, error):
    rows, _ = books
    with pytest.raises(error):
        Book.objects.bulk_update(rows, fields)


def test_bulk_update_refuses_objects_without_a_key_and_bad_batch_sizes(books):
    rows, _ = books
    with pytest.raises(ValueError, match="primary key"):
        Book.objects.bulk_update([Book(title="new")], ["title"])
    with pytest.raises(ValueError, match="positive"):
        Book.objects.bulk_update(rows, ["title"], batch_size=0)


def test_in_bulk_by_primary_key_and_by_a_unique_field(books):
    rows, (ann, bob) = books
    got = Book.objects.in_bulk([rows[0].pk, rows[2].pk, 10**6])
    assert got == {rows[0].pk: rows[0], rows[2].pk: rows[2]}
    assert Book.objects.filter(pages__gte=3).in_bulk() == {b.pk: b for b in rows[3:]}
    assert Author.objects.in_bulk(["b@x"], field_name="email") == {"b@x": bob}
    assert Book.objects.in_bulk([]) == {}
    assert len(Book.objects.in_bulk(list(range(2000)))) == 5  # more keys than one batch


def test_in_bulk_refuses_non_unique_fields_slices_and_values(books):
    with pytest.raises(qplan.FieldError, match="unique"):
        Book.objects.in_bulk([1], field_name="title")
    with pytest.raises(qplan.FieldError):
        Book.objects.in_bulk([1], field_name="nope")
    with pytest.raises(TypeError):
        Book.objects.all()[:2].in_bulk([1])
    with pytest.raises(TypeError):
        Book.objects.values("id").in_bulk([1])
