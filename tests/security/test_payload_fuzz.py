"""Bounded fuzzing of ``qplan.loads`` and ``qplan.from_json`` in every run (issue 9, §2).

Each input must either load a plan that compiles for every backend, or raise
``UnsafePayload``, within 1 s and 64 MB (time.perf_counter and tracemalloc's peak, per
input). The generators aim at the attacks the loader defends against: opcodes that
straddle a frame end, memo-index bombs, shared-reference (DAG) bombs written by hand
with MEMOIZE/GET, BUILD on allowed objects, and mutations of real payloads. Sizes follow
the hypothesis profile of tests/conftest.py (``ci``: 60 examples a test).
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import struct
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

from hypothesis import given, strategies as st  # sizes: the profile in tests/conftest.py

import qplan
from qplan import UnsafePayload, payloads
from qplan.jsonplan import from_json
from qplan.payloads import FLAG_SIGNED, HEADER, MAGIC, dumps, loads
from qplan.plan import FORMAT_VERSION

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
sys.path.insert(0, str(GOLDEN))
import make_golden  # noqa: E402

KEY = b"f" * 32
SECONDS = 1.0
MEGABYTES = 64
DIALECTS = ("sqlite", "postgresql", "mysql")


def _plans() -> list[qplan.Plan]:
    return [build() for build in make_golden.PLANS.values()]


PLANS = _plans()
SEEDS = ([dumps(p) for p in PLANS] + [pickle.dumps(p, protocol=n) for p in PLANS for n in range(6)]
         + [path.read_bytes() for path in sorted(GOLDEN.iterdir())
            if path.suffix in (".qplan", ".pickle") and ".signed." not in path.name])
JSON_SEEDS = [p.to_json().encode() for p in PLANS]
BODIES = [pickle.dumps(p, protocol=4) for p in PLANS]


def sign(body: bytes) -> bytes:
    header = HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_SIGNED)
    return header + hmac.new(KEY, header + body, hashlib.sha256).digest() + body


def check(load: Callable[[Any], qplan.Plan], data: Any, **kwargs: Any) -> qplan.Plan | None:
    """Load ``data``: a plan that compiles everywhere, or UnsafePayload; in 1 s and 64 MB.

    Timed on its own, then loaded again under tracemalloc for the peak (tracing slows
    allocation several times over, so one run cannot measure both).
    """
    started = time.perf_counter()
    try:
        plan = load(data, **kwargs)
    except UnsafePayload:
        plan = None
    elapsed = time.perf_counter() - started
    assert elapsed < SECONDS, f"loading took {elapsed:.2f} s: {bytes(data)[:200]!r}"
    tracemalloc.start()
    try:
        load(data, **kwargs)
    except UnsafePayload:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEGABYTES * 2**20, f"loading allocated {peak / 2**20:.0f} MB: {bytes(data)[:200]!r}"
    if plan is not None:
        for dialect in DIALECTS:
            try:
                plan.compile(dialect)
            except qplan.NotSupportedError:
                pass  # a plan some backend cannot run: a clear, typed error there
        assert loads(dumps(plan)) == plan
    return plan


def load_all(data: bytes) -> None:
    """Both loaders, unsigned. (A signed body is trusted: its opcodes are not scanned, so
    signing fuzzed bytes would only test what a key holder may write.)"""
    check(loads, data)
    check(from_json, data)


# --- building blocks ------------------------------------------------------------------------------


def _opcodes(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each opcode of a protocol-4 pickle, frames removed."""
    import pickletools

    out = []
    ops = list(pickletools.genops(body))
    for (op, _, start), nxt in zip(ops, ops[1:] + [(None, None, len(body))]):
        if op.name not in ("FRAME", "PROTO"):
            out.append((start, nxt[2]))
    return out


def unframed(body: bytes) -> bytes:
    return b"".join(body[s:e] for s, e in _opcodes(body))


def reframe(stream: bytes, cuts: list[int]) -> bytes:
    """``stream`` (opcodes, no PROTO) cut into frames at the given offsets, anywhere."""
    out, last = [b"\x80\x04"], 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts} | {len(stream)}):
        chunk = stream[last:cut]
        if chunk:
            out.append(pickle.FRAME + struct.pack("<Q", len(chunk)) + chunk)
        last = cut
    return b"".join(out)


def restore_call(records: bytes, model: bytes = b"testmodels.Book") -> bytes:
    """A protocol-4 pickle of _restore(1, model, <records>, None), written by hand."""
    return (b"\x80\x04\x8c\nqplan.plan\x8c\x08_restore\x93(K\x01\x8c" + bytes([len(model)]) + model
            + records + b"NtR.")


def dag(levels: int, width: int, leaf: bytes) -> bytes:
    """Records ``(("filter", node),)`` where node is ``levels`` nested "&" nodes, each
    holding the one below ``width`` times through the memo: width**levels leaves."""
    out = [b"\x8c\x06filter", b"\x8c\x01&(" * levels, leaf, b"\x94"]  # memo 0: the leaf
    for level in range(levels):  # its first child is the node just built, the rest memo gets
        get = b"h" + bytes([level]) if level < 256 else b"j" + struct.pack("<I", level)
        out.append(get * (width - 1) + b"t\x86\x94")  # memo level + 1
    out.append(b"\x86\x85")
    return b"".join(out)


LEAF = b"\x8c\x05pages\x8c\x05exact\x8c\x01=K\x01\x86\x87"
ops = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5000), st.integers(0, 255),
                         st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


def mutate(data: bytes, mutations: list[tuple[int, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, length, blob in mutations:
        pos = pos % (len(buf) + 1)
        if kind == 0 and buf:
            buf[pos % len(buf)] ^= (length % 255) + 1
        elif kind == 1:
            buf[pos:pos] = blob
        elif kind == 2:
            del buf[pos:pos + length % 16 + 1]
        elif kind == 3:
            buf[pos:pos + len(blob)] = blob
        elif kind == 4:
            buf[pos:pos] = buf[pos:pos + length % 64]
        else:
            del buf[pos:]
    return bytes(buf)


# --- the fuzz tests -------------------------------------------------------------------------------


@given(st.sampled_from(range(len(SEEDS))), st.lists(ops, min_size=8, max_size=8))
def test_mutated_payloads(seed: int, batches: list) -> None:
    for mutations in batches:
        load_all(mutate(SEEDS[seed], mutations))


@given(st.sampled_from(range(len(BODIES))), st.lists(st.integers(0, 4000), min_size=1, max_size=6),
       st.lists(ops, min_size=2, max_size=2))
def test_frames_cut_anywhere(seed: int, cuts: list[int], batches: list) -> None:
    data = reframe(unframed(BODIES[seed]), cuts)
    load_all(data)
    for mutations in batches:
        load_all(mutate(data, mutations))


@given(st.sampled_from(range(len(BODIES))), st.integers(0, 4000), st.integers(0, 2**32 - 1),
       st.sampled_from([b"q", b"r", b"p"]), st.integers(0, 4000))
def test_memo_index_bombs(seed: int, where: int, index: int, op: bytes, cut: int) -> None:
    stream = unframed(BODIES[seed])
    sizes = [e - s for s, e in _opcodes(BODIES[seed])]
    at = sum(sizes[:where % len(sizes)])  # an opcode boundary
    put = {b"q": b"q" + bytes([index % 256]), b"r": b"r" + struct.pack("<I", index),
           b"p": b"p" + str(index).encode() + b"\n"}[op]
    bombed = stream[:at] + b"N" + put + b"0" + stream[at:]
    load_all(b"\x80\x04" + bombed)
    load_all(reframe(bombed, [cut, at + 1, at + 2]))


@given(st.integers(1, 70), st.integers(2, 12), st.sampled_from([LEAF, b"\x8c\x01=K\x01\x86"]),
       st.lists(ops, max_size=2))
def test_shared_reference_bombs(levels: int, width: int, leaf: bytes, batches: list) -> None:
    data = restore_call(dag(levels, width, leaf))
    load_all(data)
    for mutations in batches:
        load_all(mutate(data, mutations))


@given(st.sampled_from(sorted(payloads.ALLOWED)), st.binary(max_size=40),
       st.sampled_from([b"}", b"N}", b")", b"N", b"\x8c\x01x"]))
def test_build_attempts(target: tuple[str, str], junk: bytes, state: bytes) -> None:
    before = {k: sorted(dir(v)) for k, v in payloads.ALLOWED.items()}
    module, name = (part.encode() for part in target)
    body = b"\x80\x02c" + module + b"\n" + name + b"\n" + state
    check(loads, body + b"b.")
    check(loads, sign(body + b"b."), key=KEY)  # signed: unscanned, BUILD runs and fails
    check(loads, body + junk + b"b.")
    assert {k: sorted(dir(v)) for k, v in payloads.ALLOWED.items()} == before


@given(st.sampled_from(range(len(JSON_SEEDS))), st.lists(ops, min_size=8, max_size=8),
       st.integers(1, 3000))
def test_mutated_json(seed: int, batches: list, depth: int) -> None:
    for mutations in batches:
        check(from_json, mutate(JSON_SEEDS[seed], mutations))
    nested = JSON_SEEDS[seed].replace(b'"records": [', b'"records": [' + b"[" * depth, 1)
    check(from_json, nested + b"]" * depth)
