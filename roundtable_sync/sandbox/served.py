"""A record of the sessions the sandbox served in complete 200 responses.

Tests compare it with what the dashboard stored: every session recorded
here reached the client whole, so a dashboard that loses nothing has stored
each of them.
"""

import threading

# NOTE: a guessed bound that keeps a long-running demo sandbox's memory
# finite. Past it, further session IDs are not recorded and the record
# reports itself incomplete.
MAX_SERVED_SESSION_IDS = 1_000_000


class ServedSessions:
    """Session IDs of the session lists sent whole with HTTP 200.

    Counts the responses, and how many of them contained each session ID.
    Safe to use from several threads.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}
        self._responses = 0
        self._complete = True

    def add(self, payload):
        """Record the sessions of one user or tag sessions payload."""
        session_ids = [
            item["session_id"]
            for item in payload.get("sessions", [])
            if isinstance(item, dict) and isinstance(item.get("session_id"), str)
        ]
        with self._lock:
            self._responses += 1
            for session_id in session_ids:
                if session_id in self._counts:
                    self._counts[session_id] += 1
                elif len(self._counts) < MAX_SERVED_SESSION_IDS:
                    self._counts[session_id] = 1
                else:
                    self._complete = False

    def clear(self):
        """Forget everything recorded; return how many responses there were."""
        with self._lock:
            responses = self._responses
            self._counts.clear()
            self._responses = 0
            self._complete = True
            return responses

    def as_dict(self):
        with self._lock:
            return {
                "responses": self._responses,
                "complete": self._complete,
                "sessions": dict(self._counts),
            }
