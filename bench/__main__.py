"""Run the benchmarks: ``python -m bench [--size small|full] [--runs N]``.

SQLite by default, in a file under BENCH_DIR; PostgreSQL when DATABASE_URL
points at a PostgreSQL server, in a database named ``bench_<size>`` there.
The data set is built on first use and kept for later runs.
"""

import argparse
import importlib
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import dj_database_url

logger = logging.getLogger("bench")

# Modules with measure(runs, size) -> list of rows, in the order printed.
# fetch and worker_memory need no data set of their own.
MEASUREMENTS = ["store", "export", "pages", "fetch", "worker_memory"]


def main(argv=None):
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ["BENCH_DATABASE_URL"] = _database_url(args.size)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from bench import dataset
    from bench.results import format_table

    size = dataset.SIZES[args.size]
    meta = dataset.ensure_built(size, rebuild=args.rebuild)
    _say(_describe(meta))
    rows = []
    for name in args.only or MEASUREMENTS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"bench.{name}":
                raise
            _say(f"not measured: bench.{name} missing")
            continue
        measured = module.measure(args.runs, args.size)
        for measured_row in measured:
            _say(_one_line(measured_row))
        rows += measured
    _say("\n" + format_table(rows))
    missed = [r["name"] for r in rows if r["met"] is False]
    if missed:
        _say("\nTargets missed: " + "; ".join(missed))
    return 0


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--size",
        choices=["small", "full"],
        default="small",
        help="small: 200 users, 10,000 sessions; full: 10,000 users, "
        "1,000,000 sessions (default: small)",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="runs of each figure (default: 5)"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MEASUREMENTS,
        metavar="NAME",
        help=f"measure only these: {', '.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--rebuild", action="store_true", help="drop the data set and build it again"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, not {args.runs}.")
    return args


def _database_url(size):
    """Return the bench database's URL, creating a PostgreSQL database if needed."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        config = dj_database_url.parse(url)
        name = f"bench_{size}"
        _create_postgres_database(config, name)
        return url.rsplit("/", 1)[0] + "/" + name
    if url and not url.startswith("sqlite:"):
        raise SystemExit(
            f"DATABASE_URL must be a sqlite:// or postgres:// URL, not {url!r:.40}."
        )
    directory = Path(
        os.environ.get("BENCH_DIR") or Path(tempfile.gettempdir()) / "roundtable-bench"
    )
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / f'bench-{size}.sqlite3'}"


def _create_postgres_database(config, name):
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        dbname="postgres",
        user=config["USER"],
        password=config["PASSWORD"],
        host=config["HOST"],
        port=config["PORT"] or 5432,
        autocommit=True,
    ) as admin:
        found = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not found:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _describe(meta):
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            import sqlite3

            database = f"SQLite {sqlite3.sqlite_version}"
    return (
        f"Data set: {meta['size']}, seed {meta['seed']}, ending {meta['anchor']} "
        f"(built in {meta['build_seconds']} s). {database}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs."
    )


def _say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _one_line(row):
    from bench.results import format_table

    return format_table([row]).splitlines()[-1]


if __name__ == "__main__":
    sys.exit(main())
