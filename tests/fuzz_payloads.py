"""Fuzz ``qplan.loads`` and ``qplan.from_json`` with atheris (libFuzzer), seeded with tests/golden.

    python tests/fuzz_payloads.py -max_total_time=60 [CORPUS_DIR ...]

Every input must load to a plan that compiles for every backend, or raise ``UnsafePayload``; any other
exception, a hang (``-timeout``) or a memory blow-up (``-rss_limit_mb``) is a finding,
written as crash-*/timeout-*/oom-* in the current folder. Without a corpus folder, new
inputs go to a scratch folder (libFuzzer writes into the first one it is given).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

with atheris.instrument_imports(include=["qplan"]):
    import qplan
    import qplan.jsonplan
    import qplan.payloads

import testmodels  # noqa: E402,F401  (registers the models the golden payloads name)

LOADERS = (qplan.payloads.loads, qplan.jsonplan.from_json)


def one_input(data: bytes) -> None:
    for load in LOADERS:
        try:
            plan = load(data)
        except qplan.UnsafePayload:
            continue
        for dialect in ("sqlite", "postgresql", "mysql"):
            try:
                plan.compile(dialect)
            except qplan.NotSupportedError:
                pass  # a clear, typed refusal of that backend
        qplan.loads(qplan.dumps(plan))


def main() -> None:
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv += [tempfile.mkdtemp(prefix="qplan-fuzz-"), str(HERE / "golden")]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
