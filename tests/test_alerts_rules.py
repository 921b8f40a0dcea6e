import threading
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test import override_settings

from alerts import rules
from alerts.models import Alert, AlertRule, DetectedCheck, RuleKind
from alerts.raising import raise_alerts
from roundtable_sync.client import RoundtableClient
from roundtable_sync.models import (
    PollOutcome,
    PollRecord,
    Session,
    ThresholdSetting,
    WatchedUser,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.signals import sessions_stored
from roundtable_sync.store import store_sessions
from roundtable_sync.sync import sync_user
from roundtable_sync.watchlist import remove_users
from tests import payloads

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
AUTO_REJECT = "Auto-reject or high-priority review"
MANUAL_REVIEW = "Manual review or require additional verification"
QUIET_DEVICE = {
    "bot": "Not detected",
    "virtual_machine": "Not detected",
    "software_renderer": "Not detected",
    "vpn": "Not detected",
    "tor": "Not detected",
    "location_spoofing": "Not detected",
}
QUIET_BIOMETRIC = {"agent_behavior": "Not detected"}


def session(session_id, score=20, action="Auto-accept", **changes):
    changes.setdefault("device_checks", QUIET_DEVICE)
    changes.setdefault("biometric_checks", QUIET_BIOMETRIC)
    return payloads.session(
        session_id, risk_score=score, recommended_action=action, **changes
    )


def poll(watched, *sessions, at=NOW, first_sync=False):
    """Store the sessions as a poll would, and send its signal."""
    listing = parse_session_list(
        payloads.user_sessions(watched.user_id, list(sessions)), "user_id"
    )
    stored = store_sessions(watched.user_id, listing.sessions, at)
    sessions_stored.send(
        sender=WatchedUser,
        watched_user=watched,
        stored=stored,
        first_sync=first_sync,
        now=at,
    )
    return stored


def alerts(kind):
    return list(Alert.objects.filter(kind=kind).order_by("id"))


@pytest.fixture
def watched():
    return WatchedUser.objects.create(user_id="alice@example.com")


# Defaults


def test_migration_creates_one_rule_per_kind():
    kinds = set(AlertRule.objects.values_list("kind", flat=True))

    assert kinds == set(RuleKind.values)


def test_default_parameters():
    rules = {rule.kind: rule for rule in AlertRule.objects.all()}

    assert rules[RuleKind.SCORE_RISE].threshold == 20
    assert rules[RuleKind.SYNC_FAILING].threshold == 60
    assert "vpn" in rules[RuleKind.FIRST_DETECTION].check_names
    assert "agent_behavior" in rules[RuleKind.FIRST_DETECTION].check_names


# Block band


def test_new_session_in_block_band_alerts_once(watched):
    poll(watched, session("s1", score=70))
    poll(watched, session("s1", score=70), at=NOW + timedelta(minutes=5))

    [alert] = alerts(RuleKind.BLOCK_BAND)
    assert alert.session_id == "s1"
    assert alert.user_id == watched.user_id
    assert alert.details["band"] == "block"
    assert alert.details["score"] == 70


def test_session_below_block_band_does_not_alert(watched):
    poll(watched, session("s1", score=69))

    assert alerts(RuleKind.BLOCK_BAND) == []


def test_score_change_into_block_band_alerts(watched):
    poll(watched, session("s1", score=60))

    poll(watched, session("s1", score=75), at=NOW + timedelta(minutes=5))

    [alert] = alerts(RuleKind.BLOCK_BAND)
    assert alert.session_id == "s1"


def test_score_change_within_block_band_does_not_alert(watched):
    poll(watched, session("s1", score=60))
    poll(watched, session("s1", score=70), at=NOW + timedelta(minutes=5))

    poll(watched, session("s1", score=90), at=NOW + timedelta(minutes=10))

    assert len(alerts(RuleKind.BLOCK_BAND)) == 1


def test_session_reentering_block_band_alerts_once(watched):
    poll(watched, session("s1", score=80))
    poll(watched, session("s1", score=40), at=NOW + timedelta(minutes=5))

    poll(watched, session("s1", score=80), at=NOW + timedelta(minutes=10))

    assert len(alerts(RuleKind.BLOCK_BAND)) == 1


def test_block_band_follows_adopted_thresholds(watched):
    ThresholdSetting.objects.create(review=40, block=60, adopted_at=NOW)

    poll(watched, session("s1", score=60), session("s2", score=59))

    assert [a.session_id for a in alerts(RuleKind.BLOCK_BAND)] == ["s1"]


def test_disabled_rule_does_not_alert(watched):
    AlertRule.objects.filter(kind=RuleKind.BLOCK_BAND).update(enabled=False)

    poll(watched, session("s1", score=90))

    assert alerts(RuleKind.BLOCK_BAND) == []


# Auto-reject


def test_new_auto_reject_session_alerts(watched):
    poll(watched, session("s1", action=AUTO_REJECT))

    [alert] = alerts(RuleKind.AUTO_REJECT)
    assert alert.details["recommended_action"] == AUTO_REJECT


@pytest.mark.parametrize(
    "action",
    [MANUAL_REVIEW, "Auto-accept", "auto-reject or high-priority review", None],
)
def test_other_actions_do_not_alert(watched, action):
    poll(watched, session("s1", action=action))

    assert alerts(RuleKind.AUTO_REJECT) == []


def test_action_changed_to_auto_reject_alerts_once(watched):
    poll(watched, session("s1", action=MANUAL_REVIEW))
    poll(watched, session("s1", action=AUTO_REJECT), at=NOW + timedelta(minutes=5))

    poll(
        watched,
        session("s1", score=30, action=AUTO_REJECT),
        at=NOW + timedelta(minutes=10),
    )

    assert len(alerts(RuleKind.AUTO_REJECT)) == 1


# Score rise


@pytest.mark.parametrize(("new_score", "fires"), [(40, False), (41, True)])
def test_score_rise_fires_only_above_threshold(watched, new_score, fires):
    poll(watched, session("s1", score=20))

    poll(watched, session("s1", score=new_score), at=NOW + timedelta(minutes=5))

    assert len(alerts(RuleKind.SCORE_RISE)) == (1 if fires else 0)


def test_score_rise_details(watched):
    poll(watched, session("s1", score=10))

    poll(watched, session("s1", score=45), at=NOW + timedelta(minutes=5))

    [alert] = alerts(RuleKind.SCORE_RISE)
    assert alert.details["old_score"] == 10
    assert alert.details["rise"] == 35
    assert alert.details["score"] == 45


def test_score_rise_uses_edited_threshold(watched):
    AlertRule.objects.filter(kind=RuleKind.SCORE_RISE).update(threshold=5)
    poll(watched, session("s1", score=20))

    poll(watched, session("s1", score=26), at=NOW + timedelta(minutes=5))

    assert len(alerts(RuleKind.SCORE_RISE)) == 1


def test_score_rise_fires_once_per_session(watched):
    poll(watched, session("s1", score=0))
    poll(watched, session("s1", score=30), at=NOW + timedelta(minutes=5))

    poll(watched, session("s1", score=60), at=NOW + timedelta(minutes=10))

    assert len(alerts(RuleKind.SCORE_RISE)) == 1


def test_score_fall_does_not_alert(watched):
    poll(watched, session("s1", score=90))

    poll(watched, session("s1", score=10), at=NOW + timedelta(minutes=5))

    assert alerts(RuleKind.SCORE_RISE) == []


def test_new_session_is_not_a_score_rise(watched):
    poll(watched, session("s1", score=95))

    assert alerts(RuleKind.SCORE_RISE) == []


# First detection


def test_first_vpn_alerts_once_per_user(watched):
    vpn = {**QUIET_DEVICE, "vpn": "Detected"}
    poll(watched, session("s1", device_checks=vpn))

    poll(watched, session("s2", device_checks=vpn), at=NOW + timedelta(minutes=5))

    [alert] = alerts(RuleKind.FIRST_DETECTION)
    assert alert.session_id == "s1"
    assert alert.details["check"] == "vpn"


def test_first_detection_is_per_check(watched):
    vpn = {**QUIET_DEVICE, "vpn": "Detected"}
    agent = {"agent_behavior": "Detected"}
    poll(watched, session("s1", device_checks=vpn))

    poll(watched, session("s2", biometric_checks=agent), at=NOW + timedelta(minutes=5))

    checks = [a.details["check"] for a in alerts(RuleKind.FIRST_DETECTION)]
    assert checks == ["vpn", "agent_behavior"]


def test_first_detection_is_per_user(watched):
    other = WatchedUser.objects.create(user_id="bob@example.com")
    vpn = {**QUIET_DEVICE, "vpn": "Detected"}
    poll(watched, session("s1", device_checks=vpn))

    poll(other, session("s2", device_checks=vpn))

    users = [a.user_id for a in alerts(RuleKind.FIRST_DETECTION)]
    assert users == ["alice@example.com", "bob@example.com"]


@pytest.mark.parametrize("status", ["Not detected", "Unknown", "detected"])
def test_check_not_detected_does_not_alert(watched, status):
    poll(watched, session("s1", device_checks={**QUIET_DEVICE, "vpn": status}))

    assert alerts(RuleKind.FIRST_DETECTION) == []


def test_unlisted_check_does_not_alert_but_is_marked(watched):
    spoofing = {**QUIET_DEVICE, "location_spoofing": "Detected"}

    poll(watched, session("s1", device_checks=spoofing))

    assert alerts(RuleKind.FIRST_DETECTION) == []
    assert DetectedCheck.objects.filter(check_name="location_spoofing").exists()


def test_empty_check_list_alerts_on_every_check(watched):
    AlertRule.objects.filter(kind=RuleKind.FIRST_DETECTION).update(check_names=[])
    spoofing = {**QUIET_DEVICE, "location_spoofing": "Detected"}

    poll(watched, session("s1", device_checks=spoofing))

    assert len(alerts(RuleKind.FIRST_DETECTION)) == 1


def test_check_detected_in_changed_session_alerts(watched):
    poll(watched, session("s1"))
    vpn = {**QUIET_DEVICE, "vpn": "Detected"}

    poll(watched, session("s1", device_checks=vpn), at=NOW + timedelta(minutes=5))

    assert len(alerts(RuleKind.FIRST_DETECTION)) == 1


# Backfill


def test_backfill_raises_one_summary(watched):
    poll(
        watched,
        session("s1", score=90, action=AUTO_REJECT),
        session("s2", score=80),
        session("s3", score=55),
        session("s4", score=10, device_checks={**QUIET_DEVICE, "vpn": "Detected"}),
        first_sync=True,
    )

    [summary] = Alert.objects.all()
    assert summary.kind == RuleKind.BACKFILL
    assert summary.details["stored"] == 4
    assert summary.details["block"] == 2
    assert summary.details["review"] == 1
    assert summary.details["auto_reject"] == 1
    assert "4 historical sessions stored, 2 in the block band" in summary.title


def test_backfill_marks_history_as_detected(watched):
    vpn = {**QUIET_DEVICE, "vpn": "Detected"}
    poll(watched, session("s1", device_checks=vpn), first_sync=True)

    poll(watched, session("s2", device_checks=vpn), at=NOW + timedelta(minutes=5))

    assert alerts(RuleKind.FIRST_DETECTION) == []


def test_backfill_without_sessions_raises_nothing(watched):
    poll(watched, first_sync=True)

    assert Alert.objects.count() == 0


# Exactly once


def test_repeated_raise_of_same_alert_keeps_one(watched):
    poll(watched, session("s1", score=60))
    stored = store_sessions(
        watched.user_id,
        parse_session_list(
            payloads.user_sessions(watched.user_id, [session("s1", score=91)]),
            "user_id",
        ).sessions,
        NOW + timedelta(minutes=5),
    )

    # The same store sent twice: the dedupe key keeps one alert.
    for _ in range(2):
        sessions_stored.send(
            sender=WatchedUser,
            watched_user=watched,
            stored=stored,
            first_sync=False,
            now=NOW + timedelta(minutes=5),
        )

    assert len(alerts(RuleKind.BLOCK_BAND)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("migration_data")
def test_two_workers_raising_same_alert_keep_one(watched):
    poll(watched, session("s1", score=60))
    row = Session.objects.get(session_id="s1")
    rule = AlertRule.objects.get(kind=RuleKind.BLOCK_BAND)
    barrier = threading.Barrier(2)
    raised = []
    errors = []

    def worker():
        candidate = rules.session_alert(rule, watched, row, NOW, "same alert")
        try:
            barrier.wait(timeout=10)
            raised.extend(raise_alerts([candidate]))
        except Exception as error:  # Reported by the asserts below.
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(raised) == 1
    assert Alert.objects.filter(kind=RuleKind.BLOCK_BAND).count() == 1


# Through the sync engine and the sandbox


class FakeTime:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        pass


@pytest.fixture
def clock(sandbox):
    sandbox.clock.now = NOW
    return FakeTime(NOW)


@pytest.fixture
def client(sandbox, clock):
    with override_settings(
        ROUNDTABLE_API_URL=sandbox.url, ROUNDTABLE_API_KEY=sandbox.key
    ):
        yield RoundtableClient(
            sandbox.key, sandbox.url, sleep=clock.sleep, max_attempts=1
        )


def test_sandbox_first_sync_raises_only_summary(watched, client, clock):
    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.SYNCED
    kinds = list(Alert.objects.values_list("kind", flat=True))
    assert kinds == [RuleKind.BACKFILL]


def test_sandbox_repeated_polls_do_not_duplicate(watched, client, clock, sandbox):
    sync_user(watched, client, now=clock)
    sandbox.clock.now = clock.now = NOW + timedelta(days=3)
    sync_user(watched, client, now=clock)
    count = Alert.objects.count()
    keys = set(Alert.objects.values_list("dedupe_key", flat=True))

    clock.now = NOW + timedelta(days=3, minutes=5)
    sync_user(watched, client, now=clock)

    assert Alert.objects.count() == count
    assert set(Alert.objects.values_list("dedupe_key", flat=True)) == keys


def fail_polls(watched, client, clock, minutes):
    for minute in minutes:
        clock.now = NOW + timedelta(minutes=minute)
        watched.refresh_from_db()
        sync_user(watched, client, now=clock)


def test_sync_failing_alerts_once_per_episode(watched, client, clock, sandbox):
    sync_user(watched, client, now=clock)
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    fail_polls(watched, client, clock, [5, 30, 60, 61, 70, 120])

    [alert] = alerts(RuleKind.SYNC_FAILING)
    assert alert.created_at == NOW + timedelta(minutes=61)
    assert "no successful sync for 61 minutes" in alert.title
    assert alert.details["failing_since"] == NOW.isoformat()


def test_sync_failing_exactly_threshold_does_not_alert(watched, client, clock, sandbox):
    sync_user(watched, client, now=clock)
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    fail_polls(watched, client, clock, [5, 60])

    assert alerts(RuleKind.SYNC_FAILING) == []


def test_sync_success_rearms_sync_failing(watched, client, clock, sandbox):
    sync_user(watched, client, now=clock)
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500, count=2)
    fail_polls(watched, client, clock, [5, 70])
    fail_polls(watched, client, clock, [75])
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    fail_polls(watched, client, clock, [80, 141, 150])

    assert len(alerts(RuleKind.SYNC_FAILING)) == 2


def test_sync_failing_counts_from_adding_when_never_synced(client, clock, sandbox):
    watched = WatchedUser.objects.create(user_id="alice@example.com", added_at=NOW)
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    fail_polls(watched, client, clock, [5, 60, 61])

    [alert] = alerts(RuleKind.SYNC_FAILING)
    assert alert.created_at == NOW + timedelta(minutes=61)
    assert alert.details["last_synced_at"] is None


def test_readded_user_does_not_alert_on_first_failure(client, clock, sandbox):
    user_id = "alice@example.com"
    sandbox.faults.add("server_error", user_id=user_id, status=500)
    earlier = WatchedUser.objects.create(
        user_id=user_id, added_at=NOW - timedelta(days=10)
    )
    clock.now = NOW - timedelta(days=10)
    sync_user(earlier, client, now=clock)
    remove_users([user_id])
    readded = WatchedUser.objects.create(user_id=user_id, added_at=NOW)

    fail_polls(readded, client, clock, [5])

    assert PollRecord.objects.filter(user_id=user_id).count() == 2
    assert alerts(RuleKind.SYNC_FAILING) == []


def test_long_threshold_fires_after_poll_records_pruned(
    watched, client, clock, sandbox
):
    AlertRule.objects.filter(kind=RuleKind.SYNC_FAILING).update(threshold=24 * 60)
    sync_user(watched, client, now=clock)
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    with mock.patch.object(PollRecord, "KEEP_PER_USER", 3):
        fail_polls(watched, client, clock, [5, 360, 720, 1080, 1439, 1440, 1441])

    assert PollRecord.objects.filter(user_id=watched.user_id).count() == 3
    [alert] = alerts(RuleKind.SYNC_FAILING)
    assert alert.created_at == NOW + timedelta(minutes=1441)
    assert "no successful sync for 1441 minutes" in alert.title
