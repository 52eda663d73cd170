"""Read-your-writes and failover of ``PrimaryReplica`` on real replicated servers.

Run from the repository root (as root, or as a user who may start the servers)::

    python benchmarks/bench_replication.py [--loops 1000]

It starts, concurrently and on loopback ports from temporary folders, a PostgreSQL 15
primary with a streaming hot standby (``tests/servers.py``), a MariaDB primary with a GTID
replica and a 3-node Galera cluster (``tests/replicas.py``), and always stops them. For
each of the three, ``PrimaryReplica(primary, replicas)`` and:

1. ``--loops`` x (create a row through the router, read it back at once): reads that did
   not find the row (stale), and the share of reads a replica served;
2. the same with the replica held behind (PostgreSQL: WAL replay paused; MariaDB:
   ``MASTER_DELAY=3``; Galera has no delayed node), 100 times: stale reads;
3. failover: with this context's reads on a replica, the replica is killed (PostgreSQL:
   ``pg_ctl stop -m immediate``; MariaDB and Galera: SIGKILL of mariadbd) and the next
   reads are timed: the first one (it finds the connection dead and moves), the median of
   the 20 after it (the replica is marked down), and the median before the kill; errors
   the caller saw are counted (the target is 0);
4. a frozen replica: the same with the replica's processes stopped by SIGSTOP (a hung
   server or a dead link: its kernel still accepts TCP) under ``READ_TIMEOUT = 1`` s, and
   continued afterwards;
5. pool stress: 200 threads x 4 aliases (all on the primary, ``POOL max_size = 20`` each)
   read at once; errors, the peak of the server's connections for the database (sampled
   every few milliseconds from a connection of its own) and those left open once the
   pools are closed.

The table it prints is Markdown, one column per system.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # servers.py, replicas.py

import qplan  # noqa: E402
from qplan import Model, PrimaryReplica, fields, routing  # noqa: E402
from replicas import GaleraCluster, GtidPair  # noqa: E402
from servers import PostgresCluster, close_all, frozen, postgres_pids, start_all  # noqa: E402

DB = "bench_repl"
SYSTEMS = ("PostgreSQL", "MariaDB", "Galera")
BEHIND_LOOPS = 100
FAILOVER_READS = 20
READ_TIMEOUT = 1.0  # for the frozen replica
STRESS_THREADS, STRESS_ALIASES, STRESS_POOL = 200, 4, 20
PRIMARIES = {"primary", "g1"}  # the primaries' aliases below


class Item(Model):
    name = fields.CharField(max_length=40)

    class Meta:
        db_table = "bench_repl_item"
        key = "benchmarks.bench_replication.Item"


class System:
    """One replicated system: its qplan aliases and how to hold back, kill and revive a replica."""

    def __init__(self, title: str, databases: dict[str, dict], primary: str,
                 replicas: list[str], catch_up: Callable[[], None]) -> None:
        self.title, self.databases = title, databases
        self.primary, self.replicas = primary, replicas
        self.catch_up = catch_up
        self.hold_back: Callable[[], None] | None = None
        self.release: Callable[[], None] = lambda: None
        self.kill: Callable[[str], None] = lambda alias: None
        self.revive: Callable[[str], None] = lambda alias: None
        self.pids: Callable[[str], list[int]] = lambda alias: []
        # SQL counting the other connections to the benchmark's database
        self.count_sql = ""

    def configure(self, read_timeout: float | None = None) -> PrimaryReplica:
        router = PrimaryReplica(self.primary, self.replicas, backoff=30.0)
        databases = {a: {**spec, "READ_TIMEOUT": read_timeout or spec.get("READ_TIMEOUT", 30)}
                     for a, spec in self.databases.items()}
        qplan.configure(databases=databases, routers=[router])
        qplan.drop_tables([Item], missing_ok=True)
        qplan.create_tables([Item])
        self.catch_up()
        routing.forget_writes()
        return router


def postgresql(pg: PostgresCluster) -> System:
    pg.create_database(DB)

    def spec(endpoint: Any) -> dict:
        return {"ENGINE": "postgresql", "HOST": endpoint.host, "PORT": endpoint.port,
                "USER": endpoint.user, "PASSWORD": endpoint.password, "NAME": DB}

    system = System("PostgreSQL", {"primary": spec(pg.primary), "replica": spec(pg.replica)},
                    "primary", ["replica"], pg.wait_replica_caught_up)

    def replay(what: str) -> None:
        qplan.connections["replica"].fetchall(f"SELECT pg_wal_replay_{what}()")

    system.hold_back = lambda: replay("pause")
    system.release = lambda: replay("resume")
    system.kill = lambda alias: pg.stop_replica(mode="immediate")
    system.revive = lambda alias: pg.start_replica()
    system.pids = lambda alias: postgres_pids(pg, "replica")
    system.count_sql = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()")
    return system


def mariadb(pair: GtidPair) -> System:
    pair.create_database(DB)
    system = System("MariaDB", {"primary": pair.primary.settings(DB),
                                "replica": pair.replica.settings(DB)},
                    "primary", ["replica"], pair.wait_caught_up)
    system.hold_back = lambda: pair.attach(delay=3)
    system.release = lambda: pair.attach(delay=0)
    system.kill = lambda alias: pair.replica.kill()
    system.revive = lambda alias: (pair.replica.start(), pair.wait_caught_up())
    system.pids = lambda alias: [pair.replica.proc.pid]
    system.count_sql = MARIADB_COUNT
    return system


def galera(cluster: GaleraCluster) -> System:
    cluster.create_database(DB)
    aliases = ["g1", "g2", "g3"]
    system = System("Galera", {a: n.settings(DB) for a, n in zip(aliases, cluster.nodes)},
                    "g1", aliases[1:], lambda: None)
    system.kill = lambda alias: cluster.nodes[aliases.index(alias)].kill()
    system.revive = lambda alias: cluster.nodes[aliases.index(alias)].restart()
    system.pids = lambda alias: [cluster.nodes[aliases.index(alias)].proc.pid]
    system.count_sql = MARIADB_COUNT
    return system


MARIADB_COUNT = ("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
                 " AND ID <> CONNECTION_ID()")


def write_then_read(n: int, prefix: str) -> tuple[int, int, float]:
    """``n`` x (create, read back at once): (stale reads, reads on a replica, µs per pair)."""
    stale = on_replica = 0
    start = time.perf_counter()
    for i in range(n):
        name = f"{prefix}{i}"
        Item.objects.create(name=name)
        got = Item.objects.filter(name=name).first()
        if got is None:
            stale += 1
        elif got._db not in PRIMARIES:
            on_replica += 1
    return stale, on_replica, (time.perf_counter() - start) / n * 1e6



def timed_read(name: str) -> tuple[float, str | None]:
    """One read of ``name``: (ms, the alias that served it, None when it raised)."""
    start = time.perf_counter()
    try:
        alias = Item.objects.get(name=name)._db
    except qplan.Error:
        alias = None
    return (time.perf_counter() - start) * 1e3, alias


def reads_while(system: System, router: PrimaryReplica, disabled: Any) -> dict[str, Any]:
    """Reads of one row while the replica serving them is ``disabled`` (a context manager
    given its alias): the first read's time and where it went, the median of the next ones,
    the median before, and the errors the caller saw (the target is 0)."""
    Item.objects.create(name="kept")
    system.catch_up()
    routing.forget_writes()
    before = [timed_read("kept") for _ in range(FAILOVER_READS)]
    victim = before[-1][1]
    assert victim in system.replicas, f"reads are on {victim}, not a replica"
    out: dict[str, Any] = {}
    with disabled(victim, out):
        first = timed_read("kept")
        after = [timed_read("kept") for _ in range(FAILOVER_READS)]
    errors = sum(alias is None for _, alias in [first, *after])
    out.update({"before": statistics.median(ms for ms, _ in before), "first": first[0],
                "after": statistics.median(ms for ms, _ in after), "errors": errors,
                "moved to": first[1], "down": router.is_down(victim)})
    return out


def failover(system: System, router: PrimaryReplica) -> dict[str, Any]:
    """The replica is killed; afterwards it is revived (timed)."""
    @contextlib.contextmanager
    def killed(victim: str, out: dict[str, Any]) -> Any:
        system.kill(victim)
        yield
        start = time.perf_counter()
        system.revive(victim)
        out["revive"] = time.perf_counter() - start

    return reads_while(system, router, killed)


def frozen_failover(system: System) -> dict[str, Any]:
    """The replica's server is frozen (SIGSTOP) under ``READ_TIMEOUT``, then continued."""
    router = system.configure(read_timeout=READ_TIMEOUT)
    return reads_while(system, router, lambda victim, out: frozen(system.pids(victim)))


def pool_stress(system: System) -> dict[str, Any]:
    """200 threads x 4 pooled aliases on the primary, at once: errors and server connections."""
    spec = system.databases[system.primary]
    aliases = [f"pool{i}" for i in range(STRESS_ALIASES)]
    databases = {a: {**spec, "POOL": {"max_size": STRESS_POOL, "timeout": 30}} for a in aliases}
    databases["monitor"] = {**spec, "POOL": None}
    qplan.configure(databases=databases, routers=[])
    qplan.drop_tables([Item], using=aliases[0], missing_ok=True)
    qplan.create_tables([Item], using=aliases[0])
    monitor = qplan.connections["monitor"]

    def count() -> int:
        return int(monitor.fetchall(system.count_sql)[0][0])

    peak, errors, done = [0], [0], threading.Event()
    lock = threading.Lock()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], count())
            time.sleep(0.003)

    start = threading.Barrier(STRESS_THREADS)

    def work() -> None:
        start.wait()
        for alias in aliases:
            try:
                list(Item.objects.using(alias).filter(name="nobody"))
            except qplan.Error:
                with lock:
                    errors[0] += 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=work) for _ in range(STRESS_THREADS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    pooled = count()
    qplan.configure(databases={"monitor": databases["monitor"]})  # closes the pools
    left = count()
    qplan.configure(databases={})
    return {"statements": STRESS_THREADS * STRESS_ALIASES, "errors": errors[0], "peak": peak[0],
            "pooled": pooled, "left": left, "seconds": seconds}


def measure(system: System, loops: int) -> dict[str, Any]:
    router = system.configure()
    try:
        stale, on_replica, us = write_then_read(loops, "rw")
        result: dict[str, Any] = {"loops": loops, "stale": stale, "replica": on_replica,
                                  "us": us}
        if system.hold_back is not None:
            system.hold_back()
            try:
                time.sleep(0.2)
                result["behind"] = write_then_read(BEHIND_LOOPS, "late")
            finally:
                system.release()
            system.catch_up()
        routing.forget_writes()
        result["failover"] = failover(system, router)
        result["frozen"] = frozen_failover(system)
        routing.forget_writes()
        result["stress"] = pool_stress(system)
        return result
    finally:
        routing.forget_writes()
        qplan.connections.close_all()
        qplan.configure(databases={}, routers=[])


def table(results: dict[str, dict[str, Any]], loops: int) -> str:
    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> str:
        return "| " + label + " | " + " | ".join(
            fn(results[s]) if s in results else "n/a" for s in SYSTEMS) + " |"

    def behind(r: dict[str, Any]) -> str:
        if "behind" not in r:
            return "— (no delayed node)"
        stale, on_replica, us = r["behind"]
        return f"{stale} of {BEHIND_LOOPS} ({on_replica} on the replica)"

    f = lambda key: (lambda r: r["failover"][key])  # noqa: E731
    lines = [
        "| measure | " + " | ".join(SYSTEMS) + " |",
        "|---|" + "---|" * len(SYSTEMS),
        row(f"stale reads, {loops:,} x (write, read at once)",
            lambda r: f"{r['stale']} of {r['loops']:,}"),
        row("reads served by a replica", lambda r: f"{r['replica'] / r['loops']:.1%}"),
        row("write + read, µs per pair", lambda r: f"{r['us']:,.0f}"),
        row("stale reads, replica held behind", behind),
        row("read before the kill, median ms", lambda r: f"{f('before')(r):.2f}"),
        row("first read after the replica is killed, ms",
            lambda r: f"{f('first')(r):.2f} (to {f('moved to')(r)})"),
        row(f"next {FAILOVER_READS} reads, median ms", lambda r: f"{f('after')(r):.2f}"),
        row("errors seen by the caller", lambda r: str(f("errors")(r))),
        row("killed replica back in service, s", lambda r: f"{f('revive')(r):.1f}"),
        row(f"first read on a frozen replica (READ_TIMEOUT {READ_TIMEOUT:g} s), ms",
            lambda r: f"{r['frozen']['first']:.0f} (to {r['frozen']['moved to']})"),
        row(f"next {FAILOVER_READS} reads while it is frozen, median ms",
            lambda r: f"{r['frozen']['after']:.2f}"),
        row("errors seen by the caller (frozen)", lambda r: str(r["frozen"]["errors"])),
        row(f"pool stress: {STRESS_THREADS} threads x {STRESS_ALIASES} aliases, max_size "
            f"{STRESS_POOL}: errors", lambda r: f"{r['stress']['errors']} of "
                                                f"{r['stress']['statements']}"),
        row("pool stress: peak server connections (limit "
            f"{STRESS_ALIASES * STRESS_POOL})", lambda r: str(r["stress"]["peak"])),
        row("pool stress: open after the pools close",
            lambda r: f"{r['stress']['left']} (pooled before: {r['stress']['pooled']})"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=1000)
    args = parser.parse_args(argv)
    pg, pair, cluster = PostgresCluster(replica=True), GtidPair(), GaleraCluster()
    start = time.perf_counter()
    try:
        errors = start_all(pg, pair, cluster)  # concurrently
        print(f"servers up in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        builders = {"PostgreSQL": (pg, postgresql), "MariaDB": (pair, mariadb),
                    "Galera": (cluster, galera)}
        results = {}
        for (title, (server, build)), error in zip(builders.items(), errors):
            if error is not None:
                print(f"{title}: not started: {error}", file=sys.stderr)
                continue
            results[title] = measure(build(server), args.loops)
            print(f"{title}: {results[title]}", file=sys.stderr)
        print(table(results, args.loops))
    finally:
        close_all(pg)
        pair.close()
        cluster.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
