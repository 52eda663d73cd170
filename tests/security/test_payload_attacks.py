"""Attacks on ``qplan.loads`` / ``qplan.from_json``: payloads that cost more than their size says.

Each test is an attack that worked before the fix (issue 9 §2): a shared-tuple bomb, a
frame that hides an opcode from the scanner, BUILD on an allow-listed object, and the
protocol 0-2 pickles of ``b""`` that must keep loading without allowing ``bytes(n)``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import json
import pickle
import pickletools
import struct
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest

import qplan
from payloadkit import PlanLike
from qplan import F, UnsafePayload, payloads
from qplan.jsonplan import encode, from_json
from qplan.payloads import FLAG_SIGNED, HEADER, MAGIC, dumps, loads
from qplan.plan import FORMAT_VERSION
from testmodels import Book

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402
KEY = b"s" * 32
UTC = dt.timezone.utc




def book_payload(records: tuple) -> bytes:
    return pickle.dumps(PlanLike(FORMAT_VERSION, "testmodels.Book", records, None), protocol=4)


def json_plan(records: tuple) -> str:
    return json.dumps({"qplan": "plan", "format": FORMAT_VERSION, "model": "testmodels.Book",
                       "alias": None, "records": encode(records)})


def sign(body: bytes, key: bytes = KEY) -> bytes:
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    return header + hmac.new(key, header + body, hashlib.sha256).digest() + body


def refused_cheaply(load: Callable[[], Any], match: str = "", seconds: float = 0.5,
                    megabytes: int = 16) -> None:
    """``load()`` raises UnsafePayload (matching ``match``) within the time and memory given.

    Timed on its own, then run again under tracemalloc (which slows allocation tenfold).
    """
    started = time.perf_counter()
    with pytest.raises(UnsafePayload, match=match):
        load()
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"refusing took {elapsed:.2f} s"
    tracemalloc.start()
    try:
        with pytest.raises(UnsafePayload, match=match):
            load()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < megabytes * 2**20, f"refusing allocated {peak / 2**20:.0f} MB"


# --- 1. the expanded size is budgeted -------------------------------------------------------------


def test_a_shared_in_list_bomb_is_refused_in_milliseconds() -> None:
    # 200 KB: one 100,000-value tuple, referenced by nine `pages__in` leaves
    shared = tuple(i % 200 for i in range(100_000))
    leaves = tuple(("pages", "in", ("=", shared)) for _ in range(9))
    data = book_payload((("filter", ("|", leaves)),))
    assert len(data) < 210_000
    refused_cheaply(lambda: loads(data), match="more than 65535 values", seconds=0.2, megabytes=8)
    # JSON has no sharing (the same plan is 3 MB there), but the same budget applies
    text = json_plan((("filter", ("|", leaves)),))
    refused_cheaply(lambda: from_json(text), match="more than 65535 values", seconds=1.5,
                    megabytes=256)


def test_the_value_budget_is_what_a_statement_can_bind() -> None:
    assert payloads.MAX_VALUES == 65_535
    fits = Book.objects.filter(pages__in=range(payloads.MAX_VALUES))
    assert loads(dumps(fits)) == fits
    assert from_json(fits.to_json()) == fits
    over = Book.objects.filter(pages__in=range(payloads.MAX_VALUES + 1))
    with pytest.raises(UnsafePayload, match="more than 65535 values"):
        loads(dumps(over))
    with pytest.raises(UnsafePayload, match="more than 65535 values"):
        from_json(over.to_json())
    # values count wherever they are, each leaf's in turn
    two = Book.objects.filter(pages__in=range(40_000), title__in=[str(i) for i in range(30_000)])
    with pytest.raises(UnsafePayload, match="more than 65535 values"):
        loads(dumps(two))
    # insert rows are structure: compiling costs per row, so rows are budgeted too
    rows = [Book(title="t", pages=1) for _ in range(payloads.MAX_STRUCTURE)]
    with pytest.raises(UnsafePayload, match=f"more than {payloads.MAX_STRUCTURE} commands"):
        loads(dumps(Book.objects.bulk_create_plan(rows)))
    few = Book.objects.bulk_create_plan(rows[:2000])
    assert loads(dumps(few)) == few


def test_a_shared_text_bomb_is_refused() -> None:
    # one 1 MB string, referenced by 100 leaves: 100 MB of parameters
    text = "x" * 2**20
    leaves = tuple(("title", "exact", ("=", text)) for _ in range(100))
    data = book_payload((("filter", ("|", leaves)),))
    refused_cheaply(lambda: loads(data), match="bytes of text", megabytes=8)


def test_a_shared_structure_bomb_is_refused_in_milliseconds() -> None:
    node: Any = ("pages", "exact", ("=", 1))
    for _ in range(60):  # 2**60 leaves as a tree
        node = ("&", (node, node))
    data = book_payload((("filter", node),))
    assert len(data) < 3000
    refused_cheaply(lambda: loads(data), match="more than", seconds=0.1)


def test_a_deep_shared_chain_is_measured_once_per_tuple() -> None:
    # a DAG 150 deep where every level references the level below twice: the walk must
    # not re-enter shared tuples (2**150 visits), yet still see the full depth
    node: Any = ("=", 1)
    for _ in range(190):
        node = ("+", node, node)
    records = (("annotate", (("x", node),)),)
    refused_cheaply(lambda: loads(book_payload(records)), match="more than", seconds=0.2)
    assert payloads.check_tree((("annotate", (("x", ("F", "pages")),)),)).height == 5


# --- 2. the scanner sees what the unpickler executes ------------------------------------------------


def frame(content: bytes) -> bytes:
    return pickle.FRAME + struct.pack("<Q", len(content)) + content


def test_an_opcode_straddling_a_frame_end_is_refused() -> None:
    # the frame ends inside BININT2's argument: the C unpickler drops the frame's last byte
    # and reads the argument from after the frame, so it executes the LONG_BINPUT that the
    # linear walk sees as the text of an INT. Index 0x00400000 would make a 64 MB memo
    # (0x08000000 makes 2 GB); the scanner must refuse before any of it.
    hidden = b"r" + struct.pack("<I", 0x00400000)
    data = (b"\x80\x04" + frame(b"M\x01") + b"\x02I" + hidden + b".\n.")
    assert len(data) < 26
    refused_cheaply(lambda: loads(data), match="past the end of its frame", megabytes=4)
    refused_cheaply(lambda: loads(b"QPLN\x00\x01\x00" + data), match="frame", megabytes=4)


@pytest.mark.parametrize("data, match", [
    (b"\x80\x04" + frame(b"N" + frame(b"N")) + b".", "frame inside a frame"),
    (b"\x80\x04" + pickle.FRAME + struct.pack("<Q", 50) + b"N.", "longer than the bytes"),
    (b"\x80\x04" + frame(b"X\x05\x00") + b"\x00\x00hello.", "past the end of its frame"),
    (b"\x80\x04" + frame(b"Vab") + b"c\n.", "past the end of its frame"),
    (b"\x80\x04" + frame(b"N") + b"r" + struct.pack("<I", 0x08000000) + b".", "memo index"),
    (b"\x80\x02Nq\xff.", "memo index"),
    (b"(I1\np99999999\n.", "memo index"),
    (b"(I1\np1\nI2\np1\n.", "not a qplan plan"),  # within bounds: scans, loads, not a plan
])
def test_frames_and_memo_indices(data: bytes, match: str) -> None:
    refused_cheaply(lambda: loads(data), match=match, megabytes=4)


def test_memo_index_is_bounded_by_opcodes_not_bytes() -> None:
    # 1,000 bytes of padding used to allow a memo index of 1,000 after two opcodes
    padding = b"X" + struct.pack("<I", 990) + b"a" * 990
    data = b"\x80\x04" + padding + b"r" + struct.pack("<I", 900) + b"."
    with pytest.raises(UnsafePayload, match="memo index 900"):
        payloads.scan_pickle(data)


# --- 3. nothing a payload names can be altered --------------------------------------------------


def test_build_cannot_alter_an_allowed_object() -> None:
    before = {k: (v, sorted(dir(v))) for k, v in payloads.ALLOWED.items()}
    state = (b"}(X\x08\x00\x00\x00__name__X\x04\x00\x00\x00evilX\x0c\x00\x00\x00__defaults__"
             b"X\x01\x00\x00\x00x\x85X\x01\x00\x00\x00aX" + struct.pack("<I", 2**20)
             + b"a" * 2**20 + b"u")
    for module, name in payloads.ALLOWED:
        data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n" + state + b"b."
        for attempt in (lambda: loads(data), lambda: loads(sign(data), key=KEY)):
            with pytest.raises(UnsafePayload):
                attempt()
    for key, (obj, names) in before.items():
        assert payloads.ALLOWED[key] is obj and sorted(dir(obj)) == names, key
        assert isinstance(obj, type) or not hasattr(obj, "__dict__"), key
    assert loads(dumps(Book.objects.filter(cover=b"\x00"))) == Book.objects.filter(cover=b"\x00")


@pytest.mark.parametrize("key", sorted(payloads.ALLOWED))
def test_every_allowed_object_is_immutable(key: tuple[str, str]) -> None:
    obj = payloads.ALLOWED[key]
    for name in ("__name__", "__defaults__", "x", "__call__"):
        with pytest.raises((AttributeError, TypeError)):
            setattr(obj, name, "changed")


NEEDED = getattr(payloads, "NEEDED_OPCODES", frozenset())
UNNEEDED = sorted(op.name for op in pickletools.opcodes if op.name not in NEEDED)


@pytest.mark.parametrize("name", UNNEEDED)
def test_opcodes_plans_never_use_are_refused(name: str) -> None:
    op = next(o for o in pickletools.opcodes if o.name == name)
    data = b"\x80\x05N" + op.code.encode("latin1") + b"\x00" * 8 + b"a\nb\n."  # any argument
    with pytest.raises(UnsafePayload, match=f"opcode {name}"):
        loads(data)


def _real_pickles() -> list[bytes]:
    plans = [build() for build in make_golden.PLANS.values()] + [value_plan()]
    out = [pickle.dumps(p, protocol=proto) for p in plans for proto in range(6)]
    for path in GOLDEN.iterdir():
        data = path.read_bytes()
        if path.suffix in (".qplan", ".pickle"):
            out.append(data[7 + (32 if data[6:7] == b"\x01" else 0):] if data[:4] == MAGIC else data)
    return out


def test_the_needed_opcodes_are_the_ones_plans_use() -> None:
    used = {op.name for data in _real_pickles() for op, _, _ in pickletools.genops(data)}
    assert used <= payloads.NEEDED_OPCODES
    # the rest serve plans not in the samples: bigger ints, longer text and bytes
    assert payloads.NEEDED_OPCODES - used <= {
        "BININT", "BININT2", "LONG", "LONG1", "LONG4", "BINUNICODE", "BINBYTES", "LONG_BINPUT",
        "LONG_BINGET", "GET", "BINGET", "FLOAT", "INT", "UNICODE", "PUT", "GLOBAL", "TUPLE1",
        "TUPLE2", "TUPLE3", "EMPTY_TUPLE", "NEWTRUE", "NEWFALSE", "MEMOIZE", "FRAME",
        "STACK_GLOBAL", "BINPUT", "SHORT_BINBYTES"}


# --- 4. every protocol loads, bytes() cannot allocate ---------------------------------------------


def value_plan() -> qplan.Plan:
    when = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    return (Book.objects.annotate(t=F("title"))
            .filter(cover=b"", price=decimal.Decimal("-12.50"), created__lt=when,
                    published=dt.date(1, 1, 1), t__gt=dt.time(12, 30, tzinfo=UTC))
            .filter(cover__in=[b"\x00\xff", b""], t__lt=dt.time(1)))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("plan", [
    value_plan(),
    Book.objects.filter(cover=b""),
    Book.objects.create_plan(title="", cover=b"", meta=[], price=decimal.Decimal("0"),
                             created=dt.datetime(1, 1, 1, tzinfo=UTC)),
], ids=["values", "empty-bytes", "insert"])
def test_every_protocol_loads(plan: qplan.Plan, protocol: int) -> None:
    loaded = loads(pickle.dumps(plan, protocol=protocol))
    assert loaded == plan
    assert loaded.compile("postgresql") == plan.compile("postgresql")


def test_bytes_is_only_the_empty_bytes() -> None:
    for module in (b"__builtin__", b"builtins"):
        for args in (b"J\x00\xe4\x0bT\x85", b"X\x01\x00\x00\x00a\x85", b"N\x85"):  # bytes(2e11)...
            data = b"\x80\x02c" + module + b"\nbytes\n" + args + b"R."
            refused_cheaply(lambda: loads(data), match="bytes\\(\\) with arguments", megabytes=1)
    with pytest.raises(UnsafePayload, match="holds a bytes|not a qplan plan"):
        loads(b"\x80\x02c__builtin__\nbytes\n)R.")
