"""Evaluate the alert rules when the sync engine stores sessions or records a poll."""

import logging

from alerts import rules
from alerts.models import Alert, AlertRule, DetectedCheck, RuleKind
from alerts.raising import raise_alerts

logger = logging.getLogger(__name__)


def on_sessions_stored(sender, watched_user, stored, first_sync, now, **kwargs):
    """Raise per-session alerts, or one summary when the poll is a backfill."""
    enabled = {r.kind: r for r in AlertRule.objects.filter(enabled=True)}
    if first_sync:
        # History is not news: mark its detections as seen and summarise it.
        rules.mark_history_detected(watched_user.user_id, now)
        rule = enabled.get(RuleKind.BACKFILL)
        summary = rule and rules.backfill_alert(rule, watched_user, stored, now)
        raise_alerts([summary] if summary else [])
        return

    written = rules.load_stored_sessions(watched_user, stored, now)
    new_sessions = [written[sid] for sid in stored.new_session_ids if sid in written]
    changes = [c for c in stored.score_changes if c.session_id in written]
    candidates = []
    for kind, evaluate in rules.SESSION_RULES.items():
        if kind in enabled:
            candidates += evaluate(
                enabled[kind], watched_user, new_sessions, changes, written, now
            )
    first_alerts, new_names = rules.first_detection_alerts(
        enabled.get(RuleKind.FIRST_DETECTION), watched_user, written, now
    )
    raise_alerts(candidates + first_alerts)
    # Marked after the alerts are saved: if this step fails, the next poll
    # finds the same first detections and their dedupe keys stop a repeat.
    rules.mark_detected(watched_user.user_id, new_names, now)


def on_poll_recorded(sender, watched_user, result, now, **kwargs):
    rule = AlertRule.objects.filter(kind=RuleKind.SYNC_FAILING, enabled=True).first()
    if rule is None:
        return
    alert = rules.sync_failing_alert(rule, watched_user, result, now)
    if alert is not None:
        raise_alerts([alert])


def erase_user_alerts(sender, user_id, **kwargs):
    """Delete the alerts and first-detection state of an erased user."""
    alerts, _ = Alert.objects.filter(user_id=user_id).delete()
    detections, _ = DetectedCheck.objects.filter(user_id=user_id).delete()
    return {"alerts_and_deliveries": alerts, "detected_checks": detections}


def expire_alerts(sender, cutoff, **kwargs):
    """Delete alerts older than the retention cutoff, with their deliveries."""
    deleted, _ = Alert.objects.filter(created_at__lt=cutoff).delete()
    return {"alerts_and_deliveries": deleted}
