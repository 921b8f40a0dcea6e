"""CSV export of every stored session against the database's own CSV writer.

The baseline is the command-line tool writing the same rows and columns as
CSV from a plain table: ``sqlite3 -csv`` on SQLite, ``psql`` running
``COPY ... TO STDOUT CSV`` on PostgreSQL. The plain table is loaded from the
product's own export in each bench run, so it contains exactly the cells the
product writes. Both sides write to a file in the same directory.
"""

import csv
import os
import subprocess
import tempfile
import threading
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import Client

from bench import dataset
from bench.results import row, time_runs
from roundtable_sync.models import Session

PLAIN_TABLE = "bench_export_plain"
MEMORY_LIMIT_MB = 100


def measure(runs, size):
    rows = Session.objects.count()
    with tempfile.TemporaryDirectory(prefix="roundtable-bench-") as directory:
        target = Path(directory) / "export.csv"
        command_memory, view_memory = [], []
        # One untimed export first, so that no side's first run pays for
        # reading the tables into the operating system's cache. Memory is
        # thus measured after one export, which has loaded every module.
        _command(target)
        command = time_runs(
            runs, lambda: command_memory.append(_peak_growth(_command, target))
        )
        view = time_runs(runs, lambda: view_memory.append(_peak_growth(_view, target)))
        _load_plain_table(target)
        _tool(target)
        tool = time_runs(runs, lambda: _tool(target))
    return [
        _rate_row(
            f"Export {rows:,} rows, command", rows, command, tool, command_memory
        ),
        _rate_row(
            f"Export {rows:,} rows, streamed view", rows, view, tool, view_memory
        ),
    ]


def _rate_row(name, rows, seconds, tool_seconds, memory):
    rates = [rows / s for s in seconds]
    tool_rates = [rows / s for s in tool_seconds]
    ratio = _median(rates) / _median(tool_rates)
    growth = max(memory)
    return row(
        f"{name} (baseline: {_tool_name()}; peak memory +{growth:.0f} MB)",
        "rows/s",
        rates,
        baseline=tool_rates,
        ratio=ratio,
        target=f">= 0.40 x tool, memory < +{MEMORY_LIMIT_MB} MB",
        met=ratio >= 0.40 and growth < MEMORY_LIMIT_MB,
    )


def _command(target):
    call_command("export_sessions", output=str(target), stderr=open(os.devnull, "w"))


def _view(target):
    client = Client()
    client.force_login(get_user_model().objects.get(username=dataset.ANALYST))
    response = client.get("/sessions/export.csv")
    if response.status_code != 200:
        raise RuntimeError(f"The export view returned HTTP {response.status_code}.")
    with open(target, "wb") as stream:
        for chunk in response.streaming_content:
            stream.write(chunk)
    response.close()


def _peak_growth(work, target):
    """Run work(target); return its peak resident memory growth in MB."""
    start = _rss_mb()
    peak = [start]
    done = threading.Event()

    def sample():
        while not done.wait(0.01):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work(target)
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_mb()) - start


def _rss_mb():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


def _load_plain_table(export_file):
    """Load the product's CSV into a table of text columns, once per data set."""
    with open(export_file, newline="", encoding="utf-8") as stream:
        reader = csv.reader(stream)
        header = next(reader)
        columns = [f"c{index}" for index in range(len(header))]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_TABLE}")
            cursor.execute(
                f"CREATE TABLE {PLAIN_TABLE} ("
                + ", ".join(f"{c} TEXT" for c in columns)
                + ")"
            )
            marks = ", ".join(["%s"] * len(columns))
            batch = []
            for values in reader:
                # Empty cells are NULL, which both tools write as nothing.
                batch.append([v if v != "" else None for v in values])
                if len(batch) == 10_000:
                    cursor.executemany(
                        f"INSERT INTO {PLAIN_TABLE} VALUES ({marks})", batch
                    )
                    batch = []
            cursor.executemany(f"INSERT INTO {PLAIN_TABLE} VALUES ({marks})", batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {PLAIN_TABLE}")


def _tool(target):
    """Baseline: the database's command-line tool writes the plain table as CSV."""
    database = settings.DATABASES["default"]
    with open(target, "wb") as stream:
        if connection.vendor == "postgresql":
            sql = f"COPY {PLAIN_TABLE} TO STDOUT WITH (FORMAT csv, HEADER)"
            command = ["psql", "--no-psqlrc", "--quiet", "--command", sql]
            environment = {
                **os.environ,
                "PGHOST": database["HOST"],
                "PGPORT": str(database["PORT"] or 5432),
                "PGUSER": database["USER"],
                "PGPASSWORD": database["PASSWORD"] or "",
                "PGDATABASE": database["NAME"],
            }
        else:
            sql = f"SELECT * FROM {PLAIN_TABLE}"
            command = ["sqlite3", "-csv", "-header", str(database["NAME"]), sql]
            environment = None
        subprocess.run(command, stdout=stream, env=environment, check=True)


def _tool_name():
    if connection.vendor == "postgresql":
        return "psql COPY TO STDOUT CSV"
    return "sqlite3 -csv"


def _median(values):
    return sorted(values)[len(values) // 2]
