"""Holders of claimed polls: the process that runs each, and its liveness.

A poll task writes its holder on the claimed row when it starts. If the
worker dies without finishing (``kill -9``, an out-of-memory kill, a power
cut), the dispatcher on the same host finds the holder process gone
and releases the claim at once, instead of waiting for the claim's lease.
"""

import logging
import os
import socket
from functools import cache

logger = logging.getLogger(__name__)


@cache
def _host():
    return socket.gethostname()


def process_start_ticks(pid):
    """Return the start time of a process in clock ticks since boot, or None.

    Read from /proc/PID/stat (Linux). It distinguishes a live process from a
    later one that reused the PID. None when the process does not exist or /proc
    cannot be read.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name in brackets may contain spaces and parentheses, so the
    # fields are counted from the last ")". Start time is field 22 of stat.
    fields = text[text.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def current_holder():
    """Return ``host:pid:start ticks`` naming this process."""
    return _holder(os.getpid())


@cache
def _holder(pid):
    # Keyed by pid, so a forked worker does not reuse its parent's name.
    return f"{_host()}:{pid}:{process_start_ticks(pid)}"


def holder_is_dead(holder):
    """Return True only when ``holder`` names a process on this host that is gone.

    A holder on another host, or one this host cannot check (no /proc), is
    taken as alive: its claim then ends with its lease.
    """
    parts = holder.rsplit(":", 2)
    if len(parts) != 3:
        return False
    host, pid_text, ticks_text = parts
    if host != _host() or not pid_text.isdigit() or not ticks_text.isdigit():
        return False
    if not os.path.isdir("/proc/self"):
        return False
    return process_start_ticks(int(pid_text)) != int(ticks_text)
