"""A local sandbox of Roundtable's Proof-of-Human API.

It serves deterministic, realistic data over HTTP with switchable faults, so
the dashboard can be run, demonstrated and tested without the real API.
"""

from roundtable_sync.sandbox.clock import FixedClock
from roundtable_sync.sandbox.data import DEMO_USER_IDS
from roundtable_sync.sandbox.faults import FaultSpecError
from roundtable_sync.sandbox.server import SandboxServer

__all__ = ["DEMO_USER_IDS", "FaultSpecError", "FixedClock", "SandboxServer"]
