"""The ``qplan`` command line (also ``python -m qplan``).

    qplan demo                                  what qplan does, on two SQLite files
    qplan sql PAYLOAD [--dialect postgresql]    the SQL and parameters of a stored plan
    qplan inspect PAYLOAD                       its commands, model, format, signature, routing
    qplan check                                 is every alias reachable? its pool's use
    qplan migrate [--database ALIAS]            create the settings' models' tables

Settings come from ``--settings``, ``$QPLAN_SETTINGS`` or ``./qplan.toml`` (see
``qplan.clisettings``). Errors print one line (``--traceback`` for the whole story)
and exit non-zero.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

from . import clisettings, demo, jsonplan, payloads, pools, settings
from .backends import names as backend_names
from .connections import connections
from .routing import allow_migrate, resolve, route
from .schema import create_tables, dependency_order
from .errors import Error, UnsafePayload
from .describe import describe
from .plan import FORMAT_VERSION, Plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A failure the command line reports as one line."""


# --- plans as the calls that built them -----------------------------------------------------------


def render_record(record: tuple) -> str:
    """One command as the call that made it (as ``repr(plan)`` shows it): ``filter(pages__gte=100)``."""
    try:
        text = describe(record)
    except Exception:  # a record this qplan cannot read: show it raw
        return repr(record)
    return text[1:] if text.startswith(".") else text


# --- reading payloads -----------------------------------------------------------------------------


def read_payload(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise CommandError(f"cannot read payload {path}: {exc.strerror or exc}") from None


def is_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


class Examined(NamedTuple):
    container: str           # "envelope", "pickle" or "json"
    version: int | None
    signed: bool
    verified: bool | None    # None: not checked (no key)
    parts: payloads.Decoded


def examine(data: bytes, keys: tuple[bytes, ...] | None) -> Examined:
    """Decode a payload of any kind without refusing a bad or unchecked signature."""
    try:
        if is_json(data):
            doc = jsonplan.parse_document(data)
            verified = jsonplan.verify(doc, keys, strict=False)
            parts = jsonplan.parts(doc)
            return Examined("json", parts.version, "signature" in doc, verified, parts)
        opened = payloads.open_envelope(data, keys, strict=False)
        parts = payloads.unpickle(opened.body, opened.version)
        return Examined(opened.container, opened.version, opened.signed, opened.verified, parts)
    except UnsafePayload:
        raise
    except Exception as exc:  # any failure to read a payload is reported as UnsafePayload
        raise UnsafePayload(f"not a loadable plan payload: {type(exc).__name__}: {exc}") from exc


def load_plan(data: bytes, keys: tuple[bytes, ...] | None) -> Plan:
    """The plan, exactly as ``qplan.loads`` / ``qplan.from_json`` would load it."""
    if is_json(data):
        return jsonplan.from_json(data, keys)  # type: ignore[arg-type]
    return payloads.loads(data, keys)  # type: ignore[arg-type]


def _keys() -> tuple[bytes, ...] | None:
    return payloads.signing_keys(None)


def _hint(exc: UnsafePayload) -> str:
    text = str(exc)
    if "not registered in this process" in text:
        text += "; list its module in the settings' MODELS"
    elif "no signing key was given" in text:
        text += " (or SIGNING_KEY in the settings)"
    return text


# --- commands -------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, config: clisettings.CLISettings) -> int:
    return demo.main()


def _route(plan: Plan) -> tuple[str | None, str]:
    """Where the plan would run per the settings, and why; no connection is made."""

    try:
        alias, router = resolve(plan)
    except Exception as exc:  # a router may need state the command line lacks
        return None, f"unknown: the routers raised {type(exc).__name__}: {exc}"
    if plan.db is not None:
        why = "set by using()"
    elif router is None:
        why = "no router chose: the default alias"
    elif isinstance(router, str):
        why = f"routed to {router!r}"
    else:
        why = f"chosen by {router!r}" if type(router).__repr__ is not object.__repr__ else \
            f"chosen by {type(router).__name__}"
    configured = settings.databases().get(alias)
    where = f"{configured['ENGINE']}" if configured else "not configured here"
    return alias, f"{alias} ({where}; a {plan.kind}, {why})"


def cmd_sql(args: argparse.Namespace, config: clisettings.CLISettings) -> int:
    data = read_payload(args.payload)
    try:
        plan = load_plan(data, _keys())
    except UnsafePayload as exc:
        raise CommandError(_hint(exc)) from exc
    dialects: Sequence[str]
    if args.dialect == "all":
        dialects = backend_names()
    elif args.dialect:
        dialects = (args.dialect,)
    else:
        alias, _ = _route(plan)
        engine = settings.databases().get(alias or "", {}).get("ENGINE")
        dialects = (engine,) if engine else backend_names()
    compiled = {d: plan.compile(d) for d in dialects}
    if args.json:
        out = {d: {"sql": c.sql, "params": jsonplan.encode(tuple(c.params))} for d, c in compiled.items()}
        print(json.dumps(out, indent=2, default=str))
        return EXIT_OK
    for i, (dialect, (sql, params)) in enumerate(compiled.items()):
        if i:
            print()
        if len(compiled) > 1:
            print(f"-- {dialect}")
        print(sql)
        print(f"-- params: {params!r}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace, config: clisettings.CLISettings) -> int:
    data = read_payload(args.payload)
    keys = _keys()
    try:
        ex = examine(data, keys)
    except UnsafePayload as exc:
        raise CommandError(str(exc)) from exc
    parts = ex.parts
    kinds = {"envelope": "envelope", "pickle": "bare pickle", "json": "JSON"}
    if not ex.signed:
        signature = "none (unsigned)" + (": refused while a signing key is set" if keys else "")
    elif ex.verified is None:
        signature = "present, not checked (no signing key in the settings)"
    elif ex.verified:
        signature = "valid (HMAC-SHA256)"
    else:
        signature = "INVALID: the payload was changed or signed with another key"
    source = "stdin" if args.payload == "-" else args.payload
    info: dict[str, Any] = {
        "payload": f"{source}: {len(data)} bytes, {'signed ' if ex.signed else ''}{kinds[ex.container]}",
        "format": f"version {parts.version} (this qplan writes version {FORMAT_VERSION})",
        "signature": signature,
        "model": parts.model_key,
        "alias": parts.alias,
    }
    status = EXIT_OK if ex.verified is not False else EXIT_FAILED
    plan = None
    try:
        plan = payloads.build(parts)
    except UnsafePayload as exc:
        info["problem"] = _hint(exc)
        status = EXIT_FAILED
    if plan is not None:
        info["model"] = f"{parts.model_key} (table {plan.model._meta.db_table})"
        info["kind"] = plan.kind
        info["routing"] = _route(plan)[1]
    commands = [render_record(r) for r in parts.records]
    if args.json:
        info["commands"] = commands
        info["signed"], info["verified"] = ex.signed, ex.verified
        info["format_version"] = parts.version
        print(json.dumps(info, indent=2, default=str))
        return status
    width = max(len(k) for k in [*info, "commands"]) + 2
    for name, value in info.items():
        if name == "alias" and value is None:
            value = "none (routing decides)"
        print(f"{name:<{width}}{value}")
    print(f"{'commands':<{width}}" + (f"\n{'':<{width}}".join(
        f"{i}. {c}" for i, c in enumerate(commands, 1)) if commands else "none (all rows)"))
    return status


class Probe(NamedTuple):
    alias: str
    engine: str
    ok: bool
    version: str
    details: str
    pool: dict[str, int] | None = None  # in_use, open, max_size; None: unpooled


def pool_text(stats: dict[str, int] | None) -> str:
    """A pool's use for ``qplan check``: ``0 in use, 1 open, max 20``."""
    if stats is None:
        return "unpooled"
    return f"{stats['in_use']} in use, {stats['open']} open, max {stats['max_size']}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def probe(alias: str) -> Probe:
    """Connect to ``alias`` and ask its version (and replica lag); never raises."""
    config = settings.databases()[alias]
    engine, name = config["ENGINE"], config["NAME"]
    conn = connections[alias]
    if conn.backend.is_file(name) and not os.path.exists(name):
        return Probe(alias, engine, False, "", f"database file {name} does not exist "
                                               "(qplan migrate creates it)")
    try:
        version, details = conn.backend.probe(conn)
        result = Probe(alias, engine, True, version, details)
    except Exception as exc:  # a probe reports every failure as its row, whatever it is
        result = Probe(alias, engine, False, "", _one_line(f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
    return result._replace(pool=pools.stats(alias))


def cmd_check(args: argparse.Namespace, config: clisettings.CLISettings) -> int:
    aliases = list(settings.databases())
    if not aliases:
        raise CommandError("no databases configured: pass --settings, set QPLAN_SETTINGS "
                           "or add a qplan.toml")
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(aliases))) as pool:
        probes = list(pool.map(probe, aliases))
    if args.json:
        print(json.dumps([p._asdict() for p in probes], indent=2))
    else:
        rows = [("ALIAS", "ENGINE", "STATUS", "VERSION", "POOL", "DETAILS")] + [
            (p.alias, p.engine, "ok" if p.ok else "FAILED", p.version or "-", pool_text(p.pool),
             p.details) for p in probes]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[5])
        failed = sum(not p.ok for p in probes)
        print(f"{len(probes) - failed} of {len(probes)} aliases answered")
    return EXIT_OK if all(p.ok for p in probes) else EXIT_FAILED


def cmd_migrate(args: argparse.Namespace, config: clisettings.CLISettings) -> int:

    databases = settings.databases()
    if not databases:
        raise CommandError("no databases configured: pass --settings, set QPLAN_SETTINGS "
                           "or add a qplan.toml")
    if args.database is not None:
        settings.database(args.database)  # ConfigurationError naming the known aliases
    if not config.models:
        raise CommandError(f"no models to migrate: list their modules in MODELS ({config.source})")
    work = []
    for model in dependency_order(config.models):
        alias = args.database or route(model.objects, "write")
        work.append((model, alias, allow_migrate(alias, model)))
    done = skipped = 0
    for i, (model, alias, allowed) in enumerate(work, 1):
        label = f"[{i}/{len(work)}] {model._meta.key} -> {alias} ({model._meta.db_table})"
        if not allowed:
            skipped += 1
            print(f"{label}: skipped, the routers do not allow it there")
            continue
        if alias not in databases:
            raise CommandError(f"{model._meta.key} routes to {alias!r}, which is not configured")
        if args.dry_run:
            done += 1
            print(f"{label}: would create")
            continue
        print(f"{label} ...", end=" ", flush=True)
        started = time.perf_counter()
        try:
            create_tables([model], using=alias, exist_ok=True)
        except BaseException:  # finish the progress line, then let the error through
            print("failed", flush=True)
            raise
        done += 1
        print(f"ok ({(time.perf_counter() - started) * 1000:.0f} ms)", flush=True)
    verb = "would create" if args.dry_run else "created (or found)"
    print(f"{verb} {done} table{'s' * (done != 1)}" + (f", skipped {skipped}" if skipped else ""))
    return EXIT_OK


# --- the parser -----------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--settings", metavar="MODULE|FILE", default=default,
                        help="settings: a module path, a .py or a .toml file "
                             "(default: $QPLAN_SETTINGS, else ./qplan.toml)")
    parser.add_argument("--traceback", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="on an error, print the whole traceback")


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="qplan",
        description="qplan: immutable, picklable query plans for every registered database.",
        epilog="Start with: qplan demo",
    )
    _common(main_parser, top=True)
    sub = main_parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description)
        _common(p)
        return p

    add("demo", "build, pickle, ship and run plans on two SQLite files (start here)",
        "Build plans, pickle them, load them in a child process, run them on two SQLite "
        "databases and print their SQL in every registered dialect. Needs no server or settings.")

    p = add("sql", "print the SQL and parameters of a stored plan",
            "Print the SQL and parameters of a stored plan (a qplan.dumps payload, a plain "
            "pickle or a to_json document). The plan's model must be importable: list its "
            "module in the settings' MODELS.")
    p.add_argument("payload", metavar="PAYLOAD", help="a file holding the payload, or - for stdin")
    p.add_argument("--dialect", choices=[*backend_names(), "all"],
                   help="the SQL dialect (default: the engine of the alias the plan routes to, "
                        "else every registered one)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("inspect", "show a stored plan's commands, model, format, signature and routing",
            "Show what a payload holds: its format version, signature state, model, commands "
            "and the alias it would run on per the settings (without connecting). Exits 1 "
            "when the signature is invalid or the plan does not fit its model.")
    p.add_argument("payload", metavar="PAYLOAD", help="a file holding the payload, or - for stdin")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("check", "connect to every configured alias: version, pool, replica lag",
            "Connect to every configured alias and print its server version, its connection "
            "pool's use (in use, open, max) and, for replicas, the replication lag. Exits 0 "
            "only when every alias answers.")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("migrate", "create the tables of the settings' models",
            "Create the tables of the settings' MODELS (if they do not exist), each on the "
            "alias its writes route to, or on --database; routers' allow_migrate(alias, model) "
            "may refuse.")
    p.add_argument("--database", metavar="ALIAS", help="create the tables on this alias only")
    p.add_argument("--dry-run", action="store_true", help="print what would be created")
    return main_parser


COMMANDS: dict[str, Callable[[argparse.Namespace, clisettings.CLISettings], int]] = {
    "demo": cmd_demo,
    "sql": cmd_sql,
    "inspect": cmd_inspect,
    "check": cmd_check,
    "migrate": cmd_migrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return EXIT_USAGE
    try:
        if args.command == "demo":  # needs no settings: it makes its own databases
            return cmd_demo(args, clisettings.CLISettings())
        config = clisettings.load(args.settings)
        config.apply()
        return COMMANDS[args.command](args, config)
    except KeyboardInterrupt:
        print("qplan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except (CommandError, Error, OSError) as exc:
        if args.traceback:
            raise
        print(f"qplan: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # a bug: one line (and the hint to --traceback), not a trace
        if args.traceback:
            raise
        print(f"qplan: error: {type(exc).__name__}: {_one_line(str(exc))} "
              f"(run with --traceback for details)", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
