"""Serve the local Roundtable API sandbox until Ctrl-C or SIGTERM."""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from roundtable_sync.sandbox import DEMO_USER_IDS, FaultSpecError, SandboxServer
from roundtable_sync.sandbox.faults import KINDS, parse_spec


def port_number(text):
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(port)
    return port


def latency_ms(text):
    milliseconds = int(text)
    if milliseconds < 0:
        raise ValueError(milliseconds)
    return milliseconds


def add_fault_options(server, specs):
    """Add ``--fault`` specs to a server's rules; raise CommandError on a bad one."""
    for spec in specs:
        try:
            server.faults.add_spec(parse_spec(spec))
        except FaultSpecError as error:
            raise CommandError(f"Invalid --fault {spec!r}: {error}") from None


class Command(BaseCommand):
    help = (
        "Serve a local sandbox of the Roundtable Proof-of-Human API on "
        "127.0.0.1 with deterministic data and optional faults."
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.server = None
        self.ready = threading.Event()
        self._stop_requested = threading.Event()

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=port_number,
            default=8787,
            help="TCP port to listen on; 0 picks a free one (default: 8787).",
        )
        parser.add_argument(
            "--key",
            default="sandbox-key",
            help="The only bearer key the sandbox accepts (default: sandbox-key).",
        )
        parser.add_argument(
            "--latency-ms",
            type=latency_ms,
            default=0,
            help="Delay before every response, in milliseconds (default: 0).",
        )
        parser.add_argument(
            "--fault",
            action="append",
            default=[],
            metavar="KIND[:PARAM=VALUE,...]",
            help=(
                "Add a fault rule; repeat for several. PARAM may also be user_id "
                "or count. Kinds: " + ", ".join(KINDS) + "."
            ),
        )

    def handle(self, *args, port, key, latency_ms, fault, **options):
        if not key:
            raise CommandError("--key must not be empty.")
        server = SandboxServer(key=key, port=port, latency=latency_ms / 1000)
        add_fault_options(server, fault)
        try:
            server.start()
        except OSError as error:
            raise CommandError(f"Cannot listen on 127.0.0.1:{port}: {error}") from None
        self.server = server

        self.stdout.write(f"Roundtable sandbox listening on {server.url}")
        self.stdout.write(
            f"Set ROUNDTABLE_API_URL={server.url} and ROUNDTABLE_API_KEY to the "
            "--key value. Demo users: " + ", ".join(DEMO_USER_IDS)
        )
        self.stdout.write("Quit with Ctrl-C.")
        self.stdout.flush()
        restore = self._handle_sigterm()
        self.ready.set()
        try:
            while not self._stop_requested.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            restore()
            server.stop()

    def stop(self):
        """Ask a running ``handle`` to stop the server and return."""
        self._stop_requested.set()

    def _handle_sigterm(self):
        # Signal handlers can only be set from the main thread; tests run the
        # command in another thread and stop it with stop().
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.stop())
        return lambda: signal.signal(signal.SIGTERM, previous)
