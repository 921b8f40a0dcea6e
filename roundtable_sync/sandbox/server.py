"""The sandbox's HTTP server: authentication, faults, control endpoints.

Run it with ``manage.py roundtable_sandbox``, or in tests::

    server = SandboxServer(key="sandbox-key", port=0, clock=FixedClock(now))
    server.start()
    ...
    server.stop()
"""

import hmac
import json
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from roundtable_sync.sandbox import api, hostile
from roundtable_sync.sandbox.clock import utc_now
from roundtable_sync.sandbox.data import DEMO_USER_IDS
from roundtable_sync.sandbox.faults import FaultRules, FaultSpecError
from roundtable_sync.sandbox.responses import FaultResponder, oversized_body
from roundtable_sync.sandbox.served import ServedSessions

logger = logging.getLogger(__name__)

CONTROL_PATH = "/_sandbox/faults"
SERVED_PATH = "/_sandbox/served"
# Endpoints whose payload is a session list, recorded in ``served``.
SESSION_LIST_ENDPOINTS = {"user_sessions", "tags"}
MAX_REQUEST_BODY = 64 * 1024
# NOTE: a guessed bound that keeps memory and the tags endpoint's work finite
# when a client asks about many distinct users.
MAX_KNOWN_USERS = 10_000


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str  # the raw request target, still percent-encoded
    headers: dict  # a copy, with Authorization redacted
    status: int
    # Unix seconds when the request line was read, before any latency.
    received_at: float = 0.0


class KnownUsers:
    """The user IDs the tags endpoint searches: demo users and users asked about."""

    def __init__(self, user_ids):
        self._lock = threading.Lock()
        self._user_ids = dict.fromkeys(user_ids)

    def add(self, user_id):
        with self._lock:
            if len(self._user_ids) < MAX_KNOWN_USERS:
                self._user_ids[user_id] = None

    def snapshot(self):
        with self._lock:
            return list(self._user_ids)


class SandboxServer:
    """A local Roundtable API on a real socket, served from a daemon thread.

    ``latency`` (seconds) delays every request. ``clock`` is a callable that
    returns an aware UTC datetime, read on every request. ``served`` records
    the sessions sent in complete 200 responses.
    """

    def __init__(
        self, key="sandbox-key", host="127.0.0.1", port=0, latency=0.0, clock=None
    ):
        if not key:
            raise ValueError("key must not be empty")
        self.key = key
        self.host = host
        self.port = port
        self.latency = latency
        self.clock = clock or utc_now
        self.faults = FaultRules()
        self.served = ServedSessions()
        self.requests = []
        self.known_users = KnownUsers(DEMO_USER_IDS)
        self.stopping = threading.Event()
        self._requests_lock = threading.Lock()
        self._httpd = None
        self._thread = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def start(self):
        """Bind the socket and serve from a daemon thread."""
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"roundtable-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.info("Roundtable sandbox listening on %s", self.url)

    def stop(self):
        """Stop serving and close open connections, including stalled ones."""
        if self._httpd is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._httpd = None
        logger.info("Roundtable sandbox on %s stopped", self.url)

    def record(self, request):
        with self._requests_lock:
            self.requests.append(request)

    def check_key(self, authorization):
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.key.encode())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, sandbox):
        self.sandbox = sandbox
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request_thread(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            # The client closed the connection, as clients under test do.
            logger.info("Connection from %s closed: %s", client_address[0], error)
        else:
            logger.error(
                "Failed to handle a request from %s",
                client_address[0],
                exc_info=error,
            )

    def close_connections(self):
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed by the client.


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RoundtableSandbox/1.0"
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 60

    @property
    def sandbox(self):
        return self.server.sandbox

    def parse_request(self):
        self.received_at = time.time()
        return super().parse_request()

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self):
        body = self._read_body()
        if body is None:
            return
        if self.sandbox.latency and self.sandbox.stopping.wait(self.sandbox.latency):
            self.close_connection = True
            return
        if not self.sandbox.check_key(self.headers.get("Authorization")):
            self.send_json(401, {"error": "invalid or missing API key"})
            return
        path, _ = api.split_target(self.path)
        if path == CONTROL_PATH:
            self._control(body)
            return
        if path == SERVED_PATH:
            self._served()
            return
        try:
            route = api.resolve(self.path)
        except api.RouteError as error:
            self.send_json(error.status, {"error": error.message})
            return
        if route is None:
            self.send_json(404, {"error": "not found"})
            return
        if self.command != "GET":
            self.send_json(405, {"error": "method not allowed"}, {"Allow": "GET"})
            return
        self._serve(route)

    def _serve(self, route):
        user_id = route.user_id
        if user_id is not None:
            self.sandbox.known_users.add(user_id)
        if route.is_oversized:
            self._send_oversized()
            return
        status, payload = api.render(
            route, self.sandbox.clock(), self.sandbox.known_users.snapshot()
        )
        rule = self.sandbox.faults.take(user_id)
        self.sent_whole = None
        if rule is None:
            self.send_json(status, payload)
        else:
            logger.info("Applying fault %s #%s to %s", rule.kind, rule.id, self.path)
            FaultResponder(self, rule).respond(status, payload)
        # Only the normal payload counts, not a fault's wrapped or cut copy.
        whole = self.sent_whole is payload and status == 200
        if whole and route.endpoint in SESSION_LIST_ENDPOINTS:
            self.sandbox.served.add(payload)

    def _served(self):
        if self.command == "GET":
            self.send_json(200, self.sandbox.served.as_dict())
        elif self.command == "DELETE":
            self.send_json(200, {"cleared": self.sandbox.served.clear()})
        else:
            self.send_json(
                405, {"error": "method not allowed"}, {"Allow": "GET, DELETE"}
            )

    def _send_oversized(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(hostile.OVERSIZED_BYTES))
        self.end_headers()
        try:
            for chunk in oversized_body(hostile.OVERSIZED_BYTES):
                self.wfile.write(chunk)
        except (BrokenPipeError, ConnectionResetError) as error:
            # Expected: a client with a size cap stops reading.
            logger.info("Client closed the connection during a large body: %s", error)
            self.close_connection = True

    def _control(self, body):
        faults = self.sandbox.faults
        if self.command == "GET":
            self.send_json(200, {"faults": faults.list()})
        elif self.command == "DELETE":
            self.send_json(200, {"cleared": faults.clear()})
        elif self.command == "POST":
            try:
                rule = faults.add_spec(_fault_spec(body))
            except FaultSpecError as error:
                logger.warning("Rejected fault rule: %s", error)
                self.send_text(400, str(error))
                return
            logger.info("Added fault %s", rule)
            self.send_json(201, {"fault": rule})
        else:
            self.send_json(
                405, {"error": "method not allowed"}, {"Allow": "GET, POST, DELETE"}
            )

    def _read_body(self):
        """Return the request body (bytes), or None after rejecting it."""
        declared = self.headers.get("Content-Length") or "0"
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_REQUEST_BODY:
            self.close_connection = True
            self.send_text(
                413,
                f"invalid Content-Length {declared!r}: expected 0 to "
                f"{MAX_REQUEST_BODY} bytes",
            )
            return None
        return self.rfile.read(length)

    def send_json(self, status, payload, headers=None):
        try:
            body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (from the hostile fixtures) has no UTF-8 form,
            # but JSON can still carry it as a \uXXXX escape.
            body = json.dumps(payload).encode("ascii")
        self.send_body(status, body, "application/json", headers)
        # Set only once the whole body was written without error.
        self.sent_whole = payload

    def send_text(self, status, text):
        self.send_body(status, text.encode("utf-8"), "text/plain; charset=utf-8")

    def send_body(self, status, body, content_type, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code="-", size="-"):
        headers = dict(self.headers.items()) if hasattr(self, "headers") else {}
        if "Authorization" in headers:
            headers["Authorization"] = "REDACTED"
        status = int(code) if str(code).isdigit() else 0
        received_at = getattr(self, "received_at", None) or time.time()
        self.sandbox.record(
            ReceivedRequest(self.command or "", self.path, headers, status, received_at)
        )
        logger.info("%s %s %s", self.command, self.path, code)

    def log_message(self, format, *args):
        # Malformed requests and timeouts; successful requests go through
        # log_request above.
        logger.warning("%s: %s", self.address_string(), format % args)


def _fault_spec(body):
    try:
        spec = json.loads(body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FaultSpecError(f"invalid JSON body: {error}") from None
    if not isinstance(spec, dict):
        raise FaultSpecError(f"invalid fault {spec!r}: expected a JSON object")
    unknown = spec.keys() - {"kind", "user_id", "count", "params"}
    if unknown:
        raise FaultSpecError(
            f"unknown field {sorted(unknown)[0]!r}: expected kind, user_id, "
            "count and params"
        )
    if "kind" not in spec:
        raise FaultSpecError("missing field 'kind'")
    return spec
