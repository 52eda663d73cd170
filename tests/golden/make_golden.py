"""Write the golden payloads of the current plan format version (run once per version).

    python tests/golden/make_golden.py [--force]

Each plan in ``PLANS`` is written as an unsigned envelope (``.qplan``), a signed one
(``.signed.qplan``, key ``KEY``), a bare pickle (``.pickle``, protocol 4; ``.p2.pickle``,
protocol 2) and JSON (``.json``), named ``<plan>.v<format version>.<form>``. The files are
committed: later releases must keep loading them (tests/test_payloads.py loads every file
here on every run), so this script never overwrites a file unless given ``--force``.
Plans here must keep building with the current API; if a later format changes how a
plan is recorded, compare what the old files load to with what ``PLANS`` builds now.
"""

from __future__ import annotations

import datetime as dt
import decimal
import pickle
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/, for testmodels

import qplan  # noqa: E402
from qplan import Count, F, Max, Q, Sum  # noqa: E402
from qplan.plan import FORMAT_VERSION  # noqa: E402
from testmodels import Author, Book, Tag  # noqa: E402

KEY = b"qplan golden signing key"
UTC = dt.timezone.utc


def _select() -> qplan.Plan:
    return (Book.objects
            .filter(pages__gte=30, is_active=True, price__lt=decimal.Decimal("19.99"),
                    published__gte=dt.date(2020, 2, 29), rating__gt=3.5,
                    created__lt=dt.datetime(2024, 5, 1, 12, 30, 15, 250, tzinfo=UTC),
                    cover=b"\x00\xffcover", title__in=["Dune", "Kindred"])
            .exclude(title__startswith="The")
            .order_by("-created", "id")[10:30])


def _conditions() -> qplan.Plan:
    return (Book.objects
            .filter(Q(author__name__icontains="le guin") | ~Q(pages__range=(100, 200)),
                    Q(rating__isnull=True) | Q(rating__lte=F("pages") / 100))
            .exclude(notes__iexact="", published=None)
            .filter(author__email__endswith="@example.org"))


def _grouped() -> qplan.Plan:
    return (Book.objects.filter(is_active=False)
            .values("author__name")
            .annotate(n=Count("id"), total=Sum("pages"), longest=Max("pages"))
            .filter(n__gt=1)
            .order_by("-n", "author__name")
            .distinct()[:5])


def _flat() -> qplan.Plan:
    return Tag.objects.filter(label__contains="%_").values_list("code", flat=True).using("archive")


def _update() -> qplan.Plan:
    return (Book.objects.filter(author__isnull=False, pages__lt=10)
            .update_plan(pages=F("pages") * 2 + 1, notes="doubled",
                         price=decimal.Decimal("0.50")))


def _delete() -> qplan.Plan:
    return Author.objects.filter(email__isnull=True).delete_plan().using("replica")


def _insert() -> qplan.Plan:
    return Book.objects.create_plan(
        title="Golden", pages=1, rating=float("inf"), price=decimal.Decimal("12.30"),
        published=dt.date(1999, 12, 31), created=dt.datetime(2000, 1, 1, tzinfo=UTC),
        cover=b"\x01\x02", meta={"tags": ["a", "b"], "n": 1}, notes="é ✓")


PLANS: dict[str, Callable[[], qplan.Plan]] = {
    "select": _select,
    "conditions": _conditions,
    "grouped": _grouped,
    "flat": _flat,
    "update": _update,
    "delete": _delete,
    "insert": _insert,
}

FORMS: dict[str, Callable[[qplan.Plan], bytes]] = {
    "qplan": lambda p: qplan.dumps(p, key=None),
    "signed.qplan": lambda p: qplan.dumps(p, key=KEY),
    "pickle": lambda p: pickle.dumps(p, protocol=4),
    "p2.pickle": lambda p: pickle.dumps(p, protocol=2),
    "json": lambda p: p.to_json().encode("utf-8"),
}


def main(argv: list[str]) -> int:
    force = "--force" in argv
    written = kept = 0
    for name, build in PLANS.items():
        plan = build()
        for form, dump in FORMS.items():
            path = HERE / f"{name}.v{FORMAT_VERSION}.{form}"
            if path.exists() and not force:
                kept += 1
                continue
            path.write_bytes(dump(plan))
            written += 1
    print(f"format version {FORMAT_VERSION}: wrote {written} files, kept {kept} existing ones")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
