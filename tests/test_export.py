import csv
import io

import pytest
from django.core.management import CommandError, call_command

from roundtable_sync.export import BASE_COLUMNS, neutralize
from roundtable_sync.models import WatchedUser
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.test_store import NOW, parsed
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


def export(*args):
    stdout = io.StringIO()
    call_command("export_sessions", *args, stdout=stdout, stderr=io.StringIO())
    return list(csv.reader(io.StringIO(stdout.getvalue())))


def test_header_lists_base_then_documented_checks():
    store_sessions("u", parsed(payloads.session("s1")), NOW)

    header = export()[0]

    assert header[:11] == [
        "user_id",
        "session_id",
        "session_time",
        "session_time_source",
        "risk_score",
        "recommended_action",
        "risk_explanation",
        "tags",
        "decision",
        "decided_by",
        "decided_at",
    ]
    assert header[11:14] == [
        "agent_behavior",
        "programmatic_typing",
        "teleporting_mouse",
    ]
    assert header[20:] == [
        "bot",
        "virtual_machine",
        "software_renderer",
        "vpn",
        "tor",
        "location_spoofing",
    ]


def test_row_holds_session_values():
    store_sessions("u", parsed(payloads.session("s1")), NOW)

    header, row = export()
    values = dict(zip(header, row, strict=True))

    assert values["user_id"] == "u"
    assert values["session_time"] == "2025-03-27T06:10:50Z"
    assert values["session_time_source"] == "user_logs"
    assert values["risk_score"] == "75"
    assert values["tags"] == "intake-survey;checkout-flow"
    assert values["vpn"] == "Detected"


def test_unknown_checks_follow_alphabetically_and_missing_are_empty():
    old = payloads.session(
        "old", biometric_checks={"agent_behavior": "Unknown"}, device_checks={}
    )
    new = payloads.session(
        "new",
        biometric_checks={"zeta_check": "Detected", "alpha_check": "Weird"},
        device_checks={},
    )
    store_sessions("u", parsed(old, new), NOW)

    rows = export()
    header = rows[0]

    assert header[11:] == ["agent_behavior", "alpha_check", "zeta_check"]
    by_id = {row[1]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_id["new"]["agent_behavior"] == ""
    assert by_id["new"]["alpha_check"] == "Weird"


def test_colliding_check_names_get_group_prefix():
    store_sessions(
        "u",
        parsed(
            payloads.session(
                "s1",
                biometric_checks={"shared": "Detected"},
                device_checks={"shared": "Not detected"},
            )
        ),
        NOW,
    )

    header = export()[0]

    assert header[11:] == ["biometric.shared", "device.shared"]


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_prefixes_are_neutralized(prefix):
    text = f'{prefix}HYPERLINK("http://x")'
    store_sessions(
        "u",
        parsed(payloads.session("s1", risk_explanation=text, tags=[text])),
        NOW,
    )

    header, row = export()
    values = dict(zip(header, row, strict=True))

    assert values["risk_explanation"] == "'" + text
    assert values["tags"].startswith("'")


@pytest.mark.parametrize("text", [" =1+1", "\n=1+1", "  @SUM(A1)", "\u00a0-1+1"])
def test_formula_behind_whitespace_neutralized(text):
    assert neutralize(text) == "'" + text


@pytest.mark.parametrize(
    "text", [" =1+1", "\n=1+1", "\u00a0-1+1", "\u3000@SUM(A1)", " plain"]
)
def test_export_neutralizes_behind_whitespace(text):
    # The export formats most cells in SQL; it must agree with neutralize().
    store_sessions(
        "u",
        parsed(payloads.session("s1", risk_explanation=text, tags=["x"])),
        NOW,
    )

    header, row = export()
    values = dict(zip(header, row, strict=True))

    assert values["risk_explanation"] == neutralize(text)


def test_neutralize_leaves_plain_text():
    assert neutralize("Detected") == "Detected"
    assert neutralize(None) == ""
    assert neutralize(75) == "75"
    assert neutralize(" plain") == " plain"


def test_user_filter_and_output_file(tmp_path):
    store_sessions("alice", parsed(payloads.session("s1")), NOW)
    store_sessions("bob", parsed(payloads.session("s2")), NOW)
    target = tmp_path / "out.csv"

    call_command(
        "export_sessions",
        "--user",
        "alice",
        "--output",
        str(target),
        stderr=io.StringIO(),
    )

    rows = list(csv.reader(target.open(newline="")))
    assert [row[1] for row in rows[1:]] == ["s1"]


def test_unknown_user_is_an_error():
    with pytest.raises(CommandError) as raised:
        export("--user", "nobody")

    assert raised.value.returncode == 2
    assert "nobody" in str(raised.value)


def test_watched_user_without_sessions_exports_header_only():
    WatchedUser.objects.create(user_id="fresh")

    rows = export("--user", "fresh")

    assert len(rows) == 1


def test_check_named_like_base_column_gets_prefix():
    store_sessions(
        "u",
        parsed(payloads.session("s1", biometric_checks={"tags": "Detected"})),
        NOW,
    )

    header = export()[0]

    assert header.count("tags") == 1
    assert "biometric.tags" in header


def test_overlong_check_name_still_gets_a_column():
    long_name = "c" * 300
    store_sessions(
        "u",
        parsed(
            payloads.session(
                "s1", biometric_checks={long_name: "Detected"}, device_checks={}
            )
        ),
        NOW,
    )

    header, row = export()

    assert header[11:] == [long_name]
    assert row[11] == "Detected"


def test_export_is_audited_with_filter_and_row_count(tmp_path):
    store_sessions("alice", parsed(payloads.session("s1")), NOW)
    store_sessions("bob", parsed(payloads.session("s2")), NOW)

    call_command(
        "export_sessions",
        "--user",
        "alice",
        "--output",
        str(tmp_path / "alice.csv"),
        stderr=io.StringIO(),
    )

    event = AuditEvent.objects.get()
    assert event.action == "sessions_exported"
    assert event.actor is None
    assert event.actor_label == "command line"
    assert event.details["filters"] == {"user": "alice"}
    assert event.details["rows"] == 1
    assert event.details["completed"] is True


def test_failed_export_is_audited_as_incomplete(tmp_path):
    store_sessions("alice", parsed(payloads.session("s1")), NOW)

    with pytest.raises(CommandError):
        call_command(
            "export_sessions", "--output", str(tmp_path / "missing" / "out.csv")
        )

    event = AuditEvent.objects.get()
    assert event.details["completed"] is False
    assert event.details["rows"] is None


HOSTILE_TEXTS = [
    'comma, "quoted" and\r\nline breaks',
    "comma, only",
    'quote" only',
    "line\nbreak only",
    "=1+1",
    "-5",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturn first",
    "'already quoted",
    "naïve ünïcode ✓",
    "",
    " leading space",
    "semi;colon",
    "back\\slash \\.",
]


def reference_csv(sessions, columns):
    """The export as csv.writer writes it from ORM values, as the product used to."""
    from reviews.models import Decision
    from roundtable_sync.models import Session

    def iso(value):
        return value.isoformat().replace("+00:00", "Z") if value else None

    output = io.StringIO()
    writer = csv.writer(output)
    writer.writerow([neutralize(h) for h in BASE_COLUMNS + [h for _, _, h in columns]])
    for session in Session.objects.filter(pk__in=sessions).order_by(
        "session_time", "session_id"
    ):
        newest = (
            Decision.objects.filter(session=session)
            .order_by("-decided_at", "-id")
            .first()
        )
        values = [
            session.user_id,
            session.session_id,
            iso(session.session_time),
            session.session_time_source,
            session.risk_score,
            session.recommended_action,
            session.risk_explanation,
            ";".join(session.tags),
            newest and newest.kind,
            newest and newest.decided_by_label,
            iso(newest and newest.decided_at),
        ]
        values += [session.checks.get(g, {}).get(n) for g, n, _ in columns]
        writer.writerow([neutralize(v) for v in values])
    return output.getvalue()


def test_export_matches_csv_writer(tmp_path):
    from datetime import timedelta

    from reviews.models import Decision
    from roundtable_sync.export import check_columns
    from roundtable_sync.models import Session

    for index, text in enumerate(HOSTILE_TEXTS):
        session = payloads.session(
            f"s{index}{text}"[:40],
            risk_explanation=text,
            recommended_action=text or None,
            risk_score=None if index % 3 == 0 else index,
            tags=[text, "plain"] if index % 2 else [],
            biometric_checks={"agent_behavior": text, f"odd,{text}": "Detected"},
            device_checks={"vpn": text},
        )
        store_sessions(f"user {text}", parsed(session), NOW + timedelta(seconds=index))
    first = Session.objects.order_by("session_id").first()
    for offset, kind in enumerate(["legitimate", "confirmed_bot"]):
        Decision.objects.create(
            session=first,
            kind=kind,
            decided_by_label="an, analyst",
            decided_at=NOW + timedelta(minutes=offset, microseconds=offset * 7),
        )
    output = tmp_path / "export.csv"

    call_command("export_sessions", "--output", str(output), stderr=io.StringIO())

    sessions = Session.objects.all()
    expected = reference_csv(sessions.values("pk"), check_columns(sessions))
    assert output.read_bytes().decode("utf-8") == expected
