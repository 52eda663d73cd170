"""``qplan demo``: plans are values. Build them, sign and pickle them, load them in another
process, run them on two databases, and read their SQL in every registered dialect.

Runs on two SQLite files in a temporary folder; needs no server and no settings.
"""

from __future__ import annotations

import os
import pickle
import secrets
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import qplan
from qplan import Count, Model, backends, fields

KEY_ENV = "QPLAN_DEMO_KEY"
WIDTH = 100


class Author(Model):
    name = fields.CharField(max_length=100)

    class Meta:
        key = "qplan.demo.Author"
        db_table = "demo_author"


class Book(Model):
    title = fields.CharField(max_length=200)
    author = fields.ForeignKey(Author, on_delete=fields.CASCADE)
    year = fields.IntegerField()
    pages = fields.IntegerField()

    class Meta:
        key = "qplan.demo.Book"
        db_table = "demo_book"


# alias -> {author: [(title, year, pages), ...]}
LIBRARY = {
    "default": {
        "Ursula K. Le Guin": [("The Left Hand of Darkness", 1969, 304), ("The Dispossessed", 1974, 387),
                              ("A Wizard of Earthsea", 1968, 183)],
        "Octavia E. Butler": [("Kindred", 1979, 264), ("Parable of the Sower", 1993, 345)],
        "Frank Herbert": [("Dune", 1965, 412)],
    },
    "archive": {
        "Mary Shelley": [("Frankenstein", 1818, 280)],
        "H. G. Wells": [("The Time Machine", 1895, 84), ("The War of the Worlds", 1898, 287)],
        "Isaac Asimov": [("Foundation", 1951, 255), ("I, Robot", 1950, 253)],
    },
}

# How the child process prints each plan's rows.
SHOW_ROW = {
    "long_reads": lambda row: f"{row[0]} ({row[1]})",
    "per_author": lambda row: f"{row['author__name']} {row['books']}",
}


def build_plans() -> dict[str, qplan.Plan]:
    return {
        "long_reads": Book.objects.filter(pages__gte=250).exclude(title__startswith="The")
        .order_by("-year").values_list("title", "year")[:3],
        "per_author": Book.objects.values("author__name").annotate(books=Count("id"))
        .order_by("-books", "author__name"),
    }


def configure(folder: Path) -> None:
    qplan.configure(databases={
        "default": f"sqlite:///{folder / 'library.db'}",
        "archive": f"sqlite:///{folder / 'archive.db'}",
    })


def fill(alias: str) -> int:
    qplan.create_tables([Author, Book], using=alias)
    count = 0
    with qplan.atomic(using=alias):
        for name, books in LIBRARY[alias].items():
            author = Author.objects.using(alias).create(name=name)
            Book.objects.using(alias).bulk_create(
                Book(title=t, author=author, year=y, pages=p) for t, y, p in books)
            count += len(books)
    return count


def _wrap(text: str, first: str, indent: int) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=" " * indent,
                         break_long_words=False, break_on_hyphens=False)


def _source(plan: qplan.Plan) -> str:
    """The plan as the calls that built it, one chained call per line after the first two."""
    text = repr(plan)[len("<Plan "):-1]
    head, *calls = text.replace(").", ")\n.").split("\n")
    lines = [head + (calls.pop(0) if calls else "")]
    for call in calls:
        if len(lines[-1]) + len(call) <= WIDTH - 12:
            lines[-1] += call
        else:
            lines.append(" " * 12 + call)
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="qplan-demo-") as tmp:
        folder = Path(tmp)
        configure(folder)
        try:
            return _run(folder)
        finally:
            qplan.connections.close_all()
            qplan.configure(databases={})


def _run(folder: Path) -> int:
    say = print
    say("qplan demo: a query plan is a value. Build it without a database, pickle it,")
    say("load it in another process, and run it on whichever database you choose.\n")
    counts = {alias: fill(alias) for alias in LIBRARY}
    say(f"Two SQLite databases in {folder}: "
        + ", ".join(f"{alias} ({n} books)" for alias, n in counts.items()) + ".")

    plans = build_plans()
    key = secrets.token_bytes(32)
    for n, (name, plan) in enumerate(plans.items(), 1):
        say(f"\nPlan {n}  {_source(plan)}")
        compiled = {d: plan.compile(d) for d in backends.names()}
        same = len({repr(c.params) for c in compiled.values()}) == 1
        if same:
            say(f"  {'params':<11} {compiled['sqlite'].params!r}")
        for dialect, (sql, params) in compiled.items():
            say(_wrap(sql, f"  {dialect:<11} ", 14))
            if not same:
                say(f"{'':14}params {params!r}")
        (folder / f"{name}.qplan").write_bytes(qplan.dumps(plan, key=key))

    sizes = " and ".join(str((folder / f"{n}.qplan").stat().st_size) for n in plans)
    say(f"\nSigned and pickled with qplan.dumps(plan, key=key): {sizes} bytes.")
    sys.stdout.flush()
    env = dict(os.environ, **{KEY_ENV: key.hex()})
    code = "import sys, qplan.demo as d; sys.exit(d.child(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(folder)], env=env)
    if done.returncode:
        print(f"qplan demo: the child process failed (exit {done.returncode})", file=sys.stderr)
        return 1

    payload = (folder / "long_reads.qplan").read_bytes()
    tampered = payload[:-12] + bytes([payload[-12] ^ 1]) + payload[-11:]
    evil = pickle.dumps(_Evil())
    say("\nqplan.loads refuses what it cannot trust:")
    for label, data, k in [("one bit changed", tampered, key), ("a pickle calling os.system", evil, None)]:
        try:
            qplan.loads(data, key=k)
            say(f"  {label:<27} loaded?!")
        except qplan.UnsafePayload as exc:
            say(_wrap(f"UnsafePayload: {exc}", f"  {label:<27} ", 30))
    say("\nNext: qplan --help (sql, inspect, check, migrate) and the README.")
    return 0


class _Evil:
    """Pickles as a call to ``os.system``, the classic pickle attack."""

    def __reduce__(self) -> tuple:
        return (os.system, ("echo this never runs",))


def child(folder: str) -> int:
    """The other process: load the signed payloads and run each on both aliases."""
    configure(Path(folder))
    key = bytes.fromhex(os.environ[KEY_ENV])
    print(f"A child process (pid {os.getpid()}) loads them with qplan.loads(payload, key=key)")
    print("and runs each on both databases with plan.using(alias):")
    try:
        for n, name in enumerate(SHOW_ROW, 1):
            plan = qplan.loads((Path(folder) / f"{name}.qplan").read_bytes(), key=key)
            for i, alias in enumerate(LIBRARY):
                rows = "; ".join(SHOW_ROW[name](row) for row in plan.using(alias)) or "(no rows)"
                label = f"Plan {n}" if i == 0 else ""
                print(_wrap(rows, f"  {label:<7} {alias:<8} ", 19))
    finally:
        qplan.connections.close_all()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
