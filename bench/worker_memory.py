"""Worker memory: resident memory of one worker over many poll tasks.

Run alone with ``python -m bench.worker_memory [--size small|full] [--runs N]``.

One ``manage.py qcluster`` with one worker, on a database of its own (see
bench.fetch), runs poll tasks queued directly. Each round claims all 100
watched users, queues one poll_user task per user as the dispatcher does,
and waits until all are polled. The sandbox answers at once with the
same payloads each time, so the tasks are steady-state re-polls. Worker
recycling is turned off (ROUNDTABLE_WORKER_RECYCLE) so that one process runs
every task.

The figure is the growth of the worker's resident memory (VmRSS from
/proc) from the end of the warm-up rounds, the first WARM_UP_SHARE of the
tasks, to the end. The target is growth under 10%.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from bench.fetch import BenchDatabase, CachedSandbox, Clusters, result_row

USERS = 100
TASKS = {"small": 1000, "full": 10_000}
WARM_UP_SHARE = 0.1


def measure(runs, scale):
    """Return one row: the worker's resident memory growth after warm-up."""
    tasks = TASKS[scale]
    growth = []
    with BenchDatabase("worker_memory") as database, CachedSandbox() as sandbox:
        sandbox.latency = 0.0
        for _ in range(runs):
            database.run_child("setup", USERS, module="bench.fetch")
            clusters = Clusters(database, sandbox, 1, 1, 0)
            clusters.env["ROUNDTABLE_WORKER_RECYCLE"] = str(tasks * 10)
            with clusters:
                samples = database.run_child(
                    "rounds",
                    tasks // USERS,
                    module="bench.worker_memory",
                    extra_args=[str(clusters.processes[0].pid)],
                )
            growth.append(worker_growth(samples, tasks // USERS))
    return [
        result_row(
            f"Worker memory: RSS growth over {tasks:,} poll tasks after warm-up",
            "%",
            growth,
            target="< 10%",
            met=max(growth) < 10,
        )
    ]


def worker_growth(samples, rounds):
    """Return the worker's RSS growth in percent from warm-up to the end.

    ``samples`` contains one {pid: kB} dict per round, for every process of
    the cluster. The worker is the process whose memory grew most.
    """
    warm = samples[max(0, int(rounds * WARM_UP_SHARE) - 1)]
    last = samples[-1]
    grown = [
        100.0 * (last[pid] - warm[pid]) / warm[pid]
        for pid in last
        if pid in warm and warm[pid]
    ]
    return max(grown)


# --- Child process, with Django set up on the bench's own database ----------


def child_rounds(rounds, cluster_pid, timeout=3600):
    """Queue ``rounds`` rounds of polls and sample the cluster's memory."""
    from django.utils import timezone
    from django_q.tasks import async_task

    from roundtable_sync.dispatch import claim_now
    from roundtable_sync.models import WatchedUser

    pks = list(WatchedUser.objects.values_list("pk", flat=True))
    samples = []
    started = time.monotonic()
    for _ in range(rounds):
        round_start = timezone.now()
        token, claimed = claim_now(pks, round_start)
        for pk in claimed:
            async_task("roundtable_sync.tasks.poll_user", pk, str(token))
        polled = WatchedUser.objects.filter(last_polled_at__gte=round_start)
        while polled.count() < len(claimed):
            if time.monotonic() - started > timeout:
                raise RuntimeError("poll tasks did not finish in time")
            time.sleep(0.05)
        samples.append(resident_kb(descendants(cluster_pid)))
    return samples


def descendants(pid):
    """Return the pids of every process below ``pid``."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # The process ended meanwhile.
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def resident_kb(pids):
    sizes = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes[str(pid)] = int(line.split()[1])
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=TASKS, default="small")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", choices=["rounds"], help=argparse.SUPPRESS)
    parser.add_argument("values", nargs="*", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import django

        django.setup()
        rounds, cluster_pid = args.values
        sys.stdout.write(json.dumps(child_rounds(rounds, cluster_pid)) + "\n")
        return 0
    for row in measure(args.runs, args.size):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
