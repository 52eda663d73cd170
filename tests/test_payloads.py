"""Plans as payloads: signing, the restricted loader, format versions, golden files, JSON, fuzzing.

Fuzzing with atheris (libFuzzer) is opt-in: ``python tests/fuzz_payloads.py -max_total_time=60``,
or ``pytest --run-slow`` for a 30 s run.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import hmac
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

import qplan
from qplan import F, Q, UnsafePayload, payloads, settings
from qplan.jsonplan import decode, encode, from_json, to_json
from qplan.payloads import FLAG_SIGNED, HEADER, MAGIC, dumps, loads
from qplan.plan import FORMAT_VERSION
from testmodels import Author, Book, Tag

GOLDEN = Path(__file__).parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

KEY = b"k" * 32
UTC = dt.timezone.utc


@pytest.fixture(autouse=True)
def no_configured_key():
    """Each test starts without a configured signing key."""
    saved = settings.option("signing_key")
    qplan.configure(signing_key=None)
    yield
    qplan.configure(signing_key=saved)


def sample_plans() -> list[qplan.Plan]:
    return [
        Book.objects.all(),
        Book.objects.filter(pages__gte=30, is_active=True).exclude(title__startswith="x")
        .order_by("-created", "id")[10:30],
        Book.objects.filter(Q(rating__isnull=True) | ~Q(pages__in=[1, 2, 3]), price=decimal.Decimal("1.25"),
                            created__gte=dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                            published=dt.date(2020, 2, 29), cover=b"\x00\x01"),
        Book.objects.values("author__name").annotate(n=qplan.Count("id")).filter(n__gt=1),
        Book.objects.filter(pages__lt=F("rating") * 2).update_plan(pages=F("pages") + 1),
        Author.objects.filter(name="x").delete_plan().using("other"),
        Tag.objects.values_list("code", flat=True).distinct(),
        Book.objects.create_plan(title="t", meta={"a": [1, 2]}, rating=float("-inf")),
    ]


PLANS = sample_plans()


# --- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("plan", PLANS, ids=range(len(PLANS)))
def test_round_trip_every_form(plan: qplan.Plan) -> None:
    for data, key in [(dumps(plan), None), (dumps(plan, key=KEY), KEY),
                      *[(pickle.dumps(plan, protocol=p), None) for p in range(pickle.HIGHEST_PROTOCOL + 1)]]:
        loaded = loads(data, key=key)
        assert loaded == plan and hash(loaded) == hash(plan) and loaded.db == plan.db
        assert loaded.compile("postgresql") == plan.compile("postgresql")
    assert from_json(plan.to_json()) == plan
    assert from_json(to_json(plan, key=KEY), key=KEY) == plan
    assert from_json(plan.to_json(KEY).encode(), key=KEY) == plan


def test_envelope_layout() -> None:
    plan = PLANS[1]
    unsigned, signed = dumps(plan), dumps(plan, key=KEY)
    assert HEADER.unpack_from(unsigned) == (MAGIC, FORMAT_VERSION, 0)
    assert unsigned[HEADER.size:] == pickle.dumps(plan, protocol=4)
    assert HEADER.unpack_from(signed) == (MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    mac, body = signed[7:39], signed[39:]
    assert body == unsigned[7:]
    assert mac == hmac.new(KEY, signed[:7] + body, hashlib.sha256).digest()


def test_str_key_is_its_utf8_bytes_and_configured_key_is_used() -> None:
    plan = PLANS[1]
    assert dumps(plan, key="clé") == dumps(plan, key="clé".encode("utf-8"))
    qplan.configure(signing_key="clé")
    data = dumps(plan)  # signed with the configured key
    assert data[6] == FLAG_SIGNED
    assert loads(data) == plan
    assert loads(data, key="clé".encode()) == plan
    with pytest.raises(UnsafePayload, match="not signed, but a signing key is set"):
        loads(HEADER.pack(MAGIC, FORMAT_VERSION, 0) + pickle.dumps(plan))
    with pytest.raises(UnsafePayload, match="bare pickle"):
        loads(pickle.dumps(plan))
    unsigned = json.loads(plan.to_json())
    del unsigned["signature"]
    with pytest.raises(UnsafePayload, match="not signed"):
        from_json(json.dumps(unsigned))
    assert from_json(plan.to_json()) == plan


def test_key_rotation() -> None:
    plan = PLANS[2]
    old = dumps(plan, key=b"old")
    assert loads(old, key=[b"new", b"old"]) == plan
    assert dumps(plan, key=[b"new", b"old"]) == dumps(plan, key=b"new")
    with pytest.raises(UnsafePayload):
        loads(old, key=[b"new"])


@pytest.mark.parametrize("bad", [b"", "", [], 3, [b"ok", None]])
def test_bad_keys_are_configuration_errors(bad: Any) -> None:
    with pytest.raises(qplan.ConfigurationError):
        dumps(PLANS[0], key=bad)


# --- signatures -----------------------------------------------------------------------------------


def test_every_changed_byte_of_a_signed_payload_is_refused() -> None:
    data = dumps(PLANS[2], key=KEY)
    for i in range(len(data)):
        for flip in (0x01, 0x80):
            changed = data[:i] + bytes([data[i] ^ flip]) + data[i + 1:]
            with pytest.raises(UnsafePayload):
                loads(changed, key=KEY)
    for cut in range(len(data)):
        with pytest.raises(UnsafePayload):
            loads(data[:cut], key=KEY)
    with pytest.raises(UnsafePayload):
        loads(data + b".", key=KEY)


def test_signature_is_checked_before_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(payloads, "unpickle", lambda *a: calls.append(a))
    evil_body = pickle.dumps(Evil())
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    forged = header + hmac.new(b"wrong", header + evil_body, hashlib.sha256).digest() + evil_body
    for data in (forged, evil_body, HEADER.pack(MAGIC, FORMAT_VERSION, 0) + evil_body):
        with pytest.raises(UnsafePayload):
            loads(data, key=KEY)
    assert calls == []


def test_signed_payload_needs_a_key() -> None:
    with pytest.raises(UnsafePayload, match="signed but no signing key"):
        loads(dumps(PLANS[1], key=KEY))
    with pytest.raises(UnsafePayload, match="signed with another key"):
        loads(dumps(PLANS[1], key=KEY), key=b"other")


def test_json_signature() -> None:
    plan = PLANS[2]
    text = plan.to_json(KEY)
    doc = json.loads(text)
    doc["alias"] = "changed"
    for bad, match in [(json.dumps(doc), "does not match"), (text, "signed but no signing key")]:
        with pytest.raises(UnsafePayload, match=match):
            from_json(bad, key=KEY if bad is not text else None)
    with pytest.raises(UnsafePayload, match="not signed"):
        from_json(plan.to_json(), key=KEY)
    # the signature covers the canonical form, not the spacing
    assert from_json(json.dumps(json.loads(text), indent=3), key=KEY) == plan


# --- the restricted loader ------------------------------------------------------------------------


class Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned > /dev/null",))


class EvalEvil:
    def __reduce__(self) -> tuple:
        return (eval, ("__import__('os').getpid()",))


class PlanLike:
    """Pickles as a call to the restore function with whatever arguments it is given."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __reduce__(self) -> tuple:
        from qplan.plan import _restore

        return (_restore, self.args)


def test_foreign_globals_are_refused() -> None:
    for obj in (Evil(), EvalEvil(), {1, 2}, object, dt.timedelta, [PLANS[0]]):
        with pytest.raises(UnsafePayload):
            loads(pickle.dumps(obj))
    with pytest.raises(UnsafePayload, match="posix.system|os.system"):
        loads(pickle.dumps(Evil()))
    # protocol 0 GLOBAL, STACK_GLOBAL, persistent ids, extension codes
    for data in (b"cos\nsystem\n(S'echo x'\ntR.", b"\x80\x04\x8c\x02os\x8c\x06system\x93.",
                 b"\x80\x02X\x01\x00\x00\x00xQ.", b"\x80\x02\x82\x01."):
        with pytest.raises(UnsafePayload):
            loads(data)


def test_pickle_cannot_alter_the_allowed_objects() -> None:
    restorer = payloads.ALLOWED[("qplan.plan", "_restore")]
    # GLOBAL qplan.plan _restore; BUILD with slot state {"__call__": ...}; and a dict state
    for state in (b"N}X\x08\x00\x00\x00__call__K\x01s\x86", b"}X\x01\x00\x00\x00aK\x01s"):
        data = b"\x80\x02cqplan.plan\n_restore\n" + state + b"b."
        with pytest.raises(UnsafePayload):
            loads(data)
    assert payloads.ALLOWED[("qplan.plan", "_restore")] is restorer
    assert not hasattr(restorer, "a") and type(restorer).__slots__ == ()
    assert loads(dumps(PLANS[1])) == PLANS[1]


def test_allow_list_is_small() -> None:
    assert set(payloads.ALLOWED) == {
        ("qplan.plan", "_restore"), ("decimal", "Decimal"), ("datetime", "datetime"),
        ("datetime", "date"), ("datetime", "time"), ("datetime", "timedelta"),
        ("datetime", "timezone"), ("_codecs", "encode"), ("__builtin__", "bytes"),
        ("builtins", "bytes")}
    with pytest.raises(UnsafePayload):
        loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R.")


@pytest.mark.parametrize("args, match", [
    ((1, "testmodels.Book", (("filter", ["x"]),), None), "holds a list"),
    ((1, "testmodels.Book", (("filter", {"a": 1}),), None), "holds a dict"),
    ((1, "testmodels.Book", (("filter", dt.timedelta(1)),), None), "holds a timedelta"),
    ((1, "testmodels.Book", (("filter", ("pages", "gt", ("=", decimal.Decimal("sNaN")))),), None),
     "signaling NaN"),
    ((1, "testmodels.Book", [("filter",)], None), "not a tuple"),
    ((1, 5, (), None), "names its model"),
    ((1, "testmodels.Book", (), 5), "alias"),
    ((1, "testmodels.Book", (("count",), ("filter", ("pages", "gte", ("=", 1)))), None),
     "count\\(\\) before its last command"),
    ((1, "testmodels.Book", ((),), None), "not a command"),
    ((1, "testmodels.Book"), "2 parts"),
])
def test_malformed_plans(args: tuple, match: str) -> None:
    body = pickle.dumps(PlanLike(*args))
    with pytest.raises(UnsafePayload):  # lists and dicts: already refused by the opcode scan
        loads(body)
    with pytest.raises(UnsafePayload, match=match):  # signed: not scanned, checked after
        loads(sign(body), key=KEY)


def sign(body: bytes, key: bytes = KEY) -> bytes:
    """``body`` in a signed envelope, as a key holder's ``dumps`` would write it."""
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    return header + hmac.new(key, header + body, hashlib.sha256).digest() + body


def test_unknown_model_names_the_key_and_imports_nothing() -> None:
    data = pickle.dumps(PlanLike(1, "no_such_app.models.Gone", (), None))
    with pytest.raises(UnsafePayload, match=r"'no_such_app.models.Gone'.*not registered.*import the module"):
        loads(data)
    assert "no_such_app" not in sys.modules
    with pytest.raises(UnsafePayload, match="not registered"):
        from_json(json.dumps({"qplan": "plan", "format": 1, "model": "os.path", "alias": None,
                              "records": []}))


def test_field_gone_names_model_and_field() -> None:
    records = (("filter", ("titel", "exact", ("=", "x"))),)
    with pytest.raises(UnsafePayload, match=r"'testmodels.Book'.*no field 'titel'.*'title'"):
        loads(pickle.dumps(PlanLike(1, "testmodels.Book", records, None)))
    with pytest.raises(UnsafePayload, match="no field 'nope'"):
        loads(pickle.dumps(PlanLike(1, "testmodels.Book", (("order_by", ("nope",)),), None)))
    with pytest.raises(UnsafePayload, match="no field 'gone'"):
        from_json(json.dumps({"qplan": "plan", "format": 1, "model": "testmodels.Book",
                              "alias": None, "records": [["values", ["gone"]]]}))


def test_shared_subtrees_cannot_blow_up() -> None:
    # 70 levels of (t, t): 2**70 leaves as a tree, a few hundred bytes as a pickle
    node: Any = ("=", 1)
    for _ in range(70):
        node = ("&", (node, node))
    data = pickle.dumps(PlanLike(1, "testmodels.Book", (("filter", node),), None))
    assert len(data) < 2000
    started = time.perf_counter()
    with pytest.raises(UnsafePayload, match="more than"):
        loads(data)
    assert time.perf_counter() - started < 5


def test_deep_nesting_is_refused() -> None:
    node: Any = ("pages", "exact", ("=", 1))
    for _ in range(300):
        node = ("!", node)
    data = pickle.dumps(PlanLike(1, "testmodels.Book", (("filter", node),), None))
    with pytest.raises(UnsafePayload, match="nested more than"):
        loads(data)
    # 100,000 nested tuples, written by hand (pickle.dumps itself would recurse too deep)
    key = b"testmodels.Book"
    data = (b"\x80\x02cqplan.plan\n_restore\n(K\x01X" + len(key).to_bytes(4, "little") + key
            + b"X\x06\x00\x00\x00filter)" + b"\x85" * 100_000 + b"\x86\x85NtR.")
    with pytest.raises(UnsafePayload, match="nested more than"):
        loads(data)
    deep_json = '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": ' + \
        "[" * 100000 + "]" * 100000 + "}"
    with pytest.raises(UnsafePayload):
        from_json(deep_json)


def test_json_given_to_loads_says_so() -> None:
    with pytest.raises(UnsafePayload, match="from_json"):
        loads(PLANS[1].to_json().encode())


def test_not_bytes() -> None:
    for data in (None, "text", 3, [1]):
        with pytest.raises(UnsafePayload):
            loads(data)  # type: ignore[arg-type]
    assert loads(bytearray(dumps(PLANS[1]))) == PLANS[1]
    assert loads(memoryview(dumps(PLANS[1]))) == PLANS[1]


# --- format versions ------------------------------------------------------------------------------


def test_newer_format_names_both_versions() -> None:
    newer = FORMAT_VERSION + 1
    data = HEADER.pack(MAGIC, newer, 0) + pickle.dumps(PLANS[1])
    with pytest.raises(UnsafePayload, match=f"format version {newer}.*newer.*version {FORMAT_VERSION}"):
        loads(data)
    with pytest.raises(UnsafePayload, match=f"version {newer}.*newer"):
        loads(pickle.dumps(PlanLike(newer, "testmodels.Book", (), None)))
    doc = json.loads(PLANS[1].to_json())
    doc["format"] = newer
    with pytest.raises(UnsafePayload, match=f"version {newer}.*newer.*{FORMAT_VERSION}"):
        from_json(json.dumps(doc))
    with pytest.raises(UnsafePayload, match="unknown flags"):
        loads(HEADER.pack(MAGIC, FORMAT_VERSION, 0x82) + pickle.dumps(PLANS[1]))


def test_unknown_old_version_and_mismatch() -> None:
    with pytest.raises(UnsafePayload, match="unknown plan format version 0"):
        loads(HEADER.pack(MAGIC, 0, 0) + pickle.dumps(PLANS[1]))
    with pytest.raises(UnsafePayload, match="unknown plan format version 0"):
        loads(pickle.dumps(PlanLike(0, "testmodels.Book", (), None)))


def test_loaders_migrate_old_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A release with format 2 keeps a loader for 1: simulate one renaming a command."""
    def load_v0(key: str, records: tuple, alias: Any) -> tuple:
        return key, tuple(("order_by",) + r[1:] if r[0] == "sort" else r for r in records), alias

    monkeypatch.setitem(payloads.LOADERS, 0, load_v0)
    old = pickle.dumps(PlanLike(0, "testmodels.Book", (("sort", ("-pages",)),), None))
    assert loads(old) == Book.objects.order_by("-pages")


def golden_files() -> list[Path]:
    return sorted(p for p in GOLDEN.iterdir() if ".v" in p.name and p.suffix != ".py")


@pytest.mark.parametrize("path", golden_files(), ids=lambda p: p.name)
def test_golden_payloads_load(path: Path) -> None:
    name = path.name.split(".")[0]
    data = path.read_bytes()
    key = make_golden.KEY if ".signed." in path.name else None
    plan = from_json(data) if path.suffix == ".json" else loads(data, key=key)
    assert plan == make_golden.PLANS[name]()
    for dialect in qplan.backends.names():
        plan.compile(dialect)


def test_golden_files_cover_every_format_version() -> None:
    files = golden_files()
    for version in payloads.LOADERS:
        found = {p.name.split(".", 2)[2] for p in files if f".v{version}." in p.name}
        assert found == set(make_golden.FORMS), f"golden payloads of format version {version}"
    assert {p.name.split(".")[0] for p in files} == set(make_golden.PLANS)


# --- JSON -----------------------------------------------------------------------------------------


def test_json_tags_round_trip() -> None:
    values = (decimal.Decimal("-1.50"), decimal.Decimal("NaN"), dt.datetime(2024, 1, 1, tzinfo=UTC),
              dt.datetime(2024, 1, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
              dt.date(1, 1, 1), dt.time(23, 59, 59, 999999), dt.time(1, tzinfo=UTC), b"\x00\xff",
              float("inf"), float("-inf"), -0.0, 1.0, 10**30, True, None, "é\x00\"", ())
    back = decode(json.loads(json.dumps(encode(values))))
    assert [type(v) for v in back] == [type(v) for v in values]
    assert back[0] == values[0] and back[1].is_nan() and back[2:] == values[2:]
    nan = decode(json.loads(json.dumps(encode((float("nan"),)))))[0]
    assert nan != nan


@pytest.mark.parametrize("doc", [
    "[]", "{}", '{"qplan": "plan"}', "not json", '{"qplan": "plan", "format": 1, "model": "x", '
    '"records": [], "extra": 1}', '{"qplan": "plan", "format": "1", "model": "testmodels.Book", "records": []}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["filter", {"$eval": "1"}]]}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["filter", {"a": 1, "b": 2}]]}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["slice", NaN, null]]}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["x", {"$bytes": "!!"}]]}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["x", {"$float": "1"}]]}',
    '{"qplan": "plan", "format": 1, "model": "testmodels.Book", "records": [["x", {"$date": 5}]]}',
    b"\xff\xfe",
])
def test_bad_json_documents(doc: Any) -> None:
    with pytest.raises(UnsafePayload):
        from_json(doc)


# --- fuzzing --------------------------------------------------------------------------------------


def _seed_payloads() -> list[bytes]:
    out = []
    for plan in PLANS:
        out += [dumps(plan), pickle.dumps(plan, protocol=2), pickle.dumps(plan, protocol=0),
                pickle.dumps(plan, protocol=5)]
    return out


SEEDS = _seed_payloads()
SIGNED_SEEDS = [dumps(plan, key=KEY) for plan in PLANS]


def _mutate(data: bytes, ops: list[tuple[int, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, length, blob in ops:
        pos = pos % (len(buf) + 1)
        if kind == 0 and buf:           # flip bits
            buf[pos % len(buf)] ^= (length % 255) + 1
        elif kind == 1:                 # insert
            buf[pos:pos] = blob
        elif kind == 2:                 # delete
            del buf[pos:pos + length % 16 + 1]
        elif kind == 3:                 # overwrite
            buf[pos:pos + len(blob)] = blob
        elif kind == 4:                 # duplicate a slice
            buf[pos:pos] = buf[pos:pos + length % 64]
        else:                           # truncate
            del buf[pos:]
    return bytes(buf)


def _load_cleanly(data: bytes, key: bytes | None = None) -> qplan.Plan | None:
    started = time.perf_counter()
    try:
        plan = loads(data, key=key)
    except UnsafePayload:
        plan = None
    assert time.perf_counter() - started < 2.0, "loading took too long"
    if plan is not None:  # a clean load: a plan that compiles, pickles, hashes and compares
        hash(plan)
        for dialect in qplan.backends.names():
            try:
                plan.compile(dialect)
            except qplan.Error:
                pass
        assert dumps(loads(dumps(plan))) == dumps(plan)  # (a NaN value never equals itself)
        repr(plan)
    return plan


ops = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5000), st.integers(0, 255),
                         st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data: bytes) -> None:
    _load_cleanly(data)
    _load_cleanly(MAGIC + data)
    _load_cleanly(b"\x80\x04" + data)


@given(st.sampled_from(range(len(SEEDS))), ops)
def test_fuzz_mutated_payloads(seed: int, mutations: list) -> None:
    _load_cleanly(_mutate(SEEDS[seed], mutations))


@given(st.sampled_from(range(len(SIGNED_SEEDS))), ops)
def test_fuzz_mutated_signed_payloads(seed: int, mutations: list) -> None:
    data = _mutate(SIGNED_SEEDS[seed], mutations)
    plan = _load_cleanly(data, key=KEY)
    assert (plan is not None) == (data == SIGNED_SEEDS[seed])


VOCABULARY = ["filter", "exclude", "order_by", "slice", "values", "values_list", "annotate",
              "count", "exists", "aggregate", "update", "delete", "insert", "distinct", "&", "|",
              "!", "=", "F", "agg", "+", "/", "title", "pages", "author", "author__name", "rating",
              "exact", "in", "range", "isnull", "gte", "icontains", "count", "sum", "*", "-pages"]
plain_values = (st.sampled_from(VOCABULARY) | st.integers(-3, 2**70) | st.booleans() | st.none()
                | st.floats() | st.decimals() | st.binary(max_size=4) | st.text(max_size=4)
                | st.dates() | st.datetimes(timezones=st.just(UTC)) | st.times())
records = st.recursive(plain_values, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=25)


@given(st.lists(records, max_size=4).map(tuple), st.sampled_from(["testmodels.Book", "testmodels.Tag", "x"]),
       st.none() | st.text(max_size=3))
def test_fuzz_structured_records(recs: tuple, model: str, alias: Any) -> None:
    """Well-typed payloads with random records: each loads to a working plan or is refused."""
    _load_cleanly(pickle.dumps(PlanLike(FORMAT_VERSION, model, recs, alias)))
    doc = {"qplan": "plan", "format": FORMAT_VERSION, "model": model, "alias": alias,
           "records": encode(recs)}
    try:
        from_json(json.dumps(doc))
    except UnsafePayload:
        pass


@given(st.sampled_from(range(len(PLANS))), ops)
def test_fuzz_mutated_json(seed: int, mutations: list) -> None:
    data = _mutate(PLANS[seed].to_json().encode(), mutations)
    try:
        from_json(data)
    except UnsafePayload:
        pass


@pytest.mark.slow
def test_atheris_fuzz(tmp_path: Path) -> None:
    """libFuzzer-driven fuzzing of loads/from_json for 30 s (opt-in: --run-slow)."""
    pytest.importorskip("atheris")
    script = Path(__file__).with_name("fuzz_payloads.py")
    done = subprocess.run([sys.executable, str(script), "-max_total_time=30", "-timeout=5",
                           "-rss_limit_mb=2048"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # crash files land in tmp_path
    assert done.returncode == 0, done.stderr[-3000:]


# --- payloads loaded before -----------------------------------------------------------------------


def test_a_payload_loaded_again_is_the_plan_checked_the_first_time():
    from qplan.payloads import loaded

    loaded.clear()
    data = qplan.dumps(Book.objects.filter(is_active=True, pages=1))
    assert qplan.loads(data) is qplan.loads(data)
    text = Book.objects.filter(pages=2).to_json()
    assert qplan.from_json(text) is qplan.from_json(text)
    # 1 == True, yet they are different payloads: each is loaded (and checked) on its own
    annotated = Book.objects.annotate(n=F("pages"))
    as_int = qplan.loads(qplan.dumps(annotated.filter(n=1)))
    as_bool = qplan.loads(qplan.dumps(annotated.filter(n=True)))
    assert type(as_int.records[-1][1][2][1]) is int
    assert type(as_bool.records[-1][1][2][1]) is bool


def test_loaded_plans_do_not_outlive_a_new_signing_key_or_the_bound():
    from qplan.payloads import loaded

    loaded.clear()
    data = qplan.dumps(Book.objects.filter(pages=3))
    qplan.loads(data)
    qplan.configure(signing_key="k")
    try:
        with pytest.raises(qplan.UnsafePayload, match="not signed"):
            qplan.loads(data)
    finally:
        qplan.configure(signing_key=None)
    for n in range(loaded.MAX_ENTRIES + 50):
        qplan.loads(qplan.dumps(Book.objects.filter(pages=n)))
    assert len(loaded._data) == loaded.MAX_ENTRIES
    big = qplan.dumps(Book.objects.filter(title__in=[f"t{i}" for i in range(2000)]))
    assert len(big) > loaded.MAX_PAYLOAD and loaded.key(big, None) is None
