"""Faulty responses: what the sandbox sends when a fault rule applies."""

import json
import logging

logger = logging.getLogger(__name__)

_MAINTENANCE_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service maintenance</title></head>\n"
    b"<body><h1>We'll be back soon</h1>"
    b"<p>The service is down for scheduled maintenance.</p></body></html>\n"
)
# A session in the documented shape, repeated to fill oversized bodies.
_FILLER_SESSION = json.dumps(
    {
        "session_id": "0000000000000000",
        "tags": ["checkout-flow"],
        "risk_score": 12,
        "risk_explanation": "No bot behaviors detected",
        "recommended_action": "Auto-accept",
        "biometric_checks": {"programmatic_typing": "Not detected"},
        "device_checks": {"bot": "Not detected"},
    }
)
_CHUNK_BYTES = 64 * 1024


class FaultResponder:
    """Send the response a fault rule calls for, instead of the normal one.

    ``handler`` is the request handler; its ``send_json`` and ``send_body``
    send complete responses.
    """

    def __init__(self, handler, rule):
        self.handler = handler
        self.rule = rule
        self.params = rule.params

    def respond(self, status, payload):
        method = getattr(self, "_" + self.rule.kind)
        try:
            method(status, payload)
        except (BrokenPipeError, ConnectionResetError) as error:
            # Expected when the client under test gives up on a large or
            # stalled body.
            logger.info(
                "Client closed the connection during %s: %s", self.rule.kind, error
            )
            self.handler.close_connection = True

    def _retry_after(self):
        if "retry_after" in self.params:
            return {"Retry-After": self.params["retry_after"]}
        return {}

    def _rate_limit(self, status, payload):
        self.handler.send_json(
            429, {"error": "rate limit exceeded"}, self._retry_after()
        )

    def _server_error(self, status, payload):
        self.handler.send_json(
            self.params["status"], {"error": "internal error"}, self._retry_after()
        )

    def _slow(self, status, payload):
        if self.handler.sandbox.stopping.wait(self.params["delay"]):
            self.handler.close_connection = True
            return
        self.handler.send_json(status, payload)

    def _stall(self, status, payload):
        body = _encode(payload)
        self._send_head(status, len(body))
        self.handler.wfile.write(body[: len(body) // 2])
        self.handler.wfile.flush()
        self.handler.sandbox.stopping.wait(self.params["delay"])
        self.handler.close_connection = True

    def _truncated(self, status, payload):
        body = _encode(payload)
        self._send_head(status, len(body))
        self.handler.wfile.write(body[: len(body) // 2])
        self.handler.close_connection = True

    def _not_json(self, status, payload):
        self.handler.send_body(200, _MAINTENANCE_PAGE, "text/html; charset=utf-8")

    def _wrong_shape(self, status, payload):
        # A wrapped envelope, as an API gateway in front of the API might send.
        self.handler.send_json(200, {"status": "ok", "data": payload})

    def _key_revoked(self, status, payload):
        self.handler.send_json(401, {"error": "API key revoked"})

    def _not_found(self, status, payload):
        self.handler.send_json(404, {"error": "not found"})

    def _redirect(self, status, payload):
        self.handler.send_body(
            self.params["status"],
            b"",
            "text/plain; charset=utf-8",
            {"Location": self.params["location"]},
        )

    def _oversized(self, status, payload):
        size = self.params["size_bytes"]
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if self.params["content_length"]:
            handler.send_header("Content-Length", str(size))
        else:
            # Without a length, the end of the body is the end of the connection.
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        for chunk in oversized_body(size):
            handler.wfile.write(chunk)

    def _send_head(self, status, length):
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", "application/json")
        self.handler.send_header("Content-Length", str(length))
        self.handler.end_headers()


def _encode(payload):
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def oversized_body(size):
    """Yield chunks of a valid JSON sessions list of exactly ``size`` bytes.

    ``size`` must be at least 64 bytes.
    """
    prefix, suffix, separator = b'{"sessions": [', b"]}", b", "
    item = _FILLER_SESSION.encode("ascii")
    room = size - len(prefix) - len(suffix)
    count = max(0, (room + len(separator)) // (len(item) + len(separator)))
    used = count * len(item) + max(0, count - 1) * len(separator)
    yield prefix
    per_chunk = max(1, _CHUNK_BYTES // (len(item) + len(separator)))
    for first in range(0, count, per_chunk):
        batch = min(per_chunk, count - first)
        chunk = separator.join([item] * batch)
        yield chunk if first == 0 else separator + chunk
    # Whitespace is valid JSON between the last item and the closing bracket.
    yield b" " * (room - used) + suffix
