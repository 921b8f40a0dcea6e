"""Decide which alerts a poll raises; each returns unsaved Alert candidates.

Every candidate carries a dedupe key naming what makes it unique, so raising
the same candidate again (a repeated poll, a second worker) adds nothing.
"""

import hashlib
from datetime import timedelta

from django.db.models import Count, Q

from alerts.models import Alert, DetectedCheck, RuleKind
from roundtable_sync.bands import Band, current_thresholds
from roundtable_sync.models import PollOutcome, Session, SessionCheck, WatchedUser

AUTO_REJECT_ACTION = "Auto-reject or high-priority review"
DETECTED = "Detected"
# Length of DetectedCheck.check_name: longer names are never first-detected.
MAX_CHECK_NAME = 255

_SESSION_FIELDS = [
    "session_id",
    "user_id",
    "risk_score",
    "recommended_action",
    "checks",
]


def dedupe_key(*parts):
    identity = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(identity.encode()).hexdigest()


def detected_checks(session):
    """Return the names of the checks the session reports as Detected, sorted."""
    return sorted(
        name
        for statuses in (session.checks or {}).values()
        for name, status in statuses.items()
        if status == DETECTED
    )


def session_alert(rule, watched_user, session, now, title, **details):
    thresholds = current_thresholds()
    band = thresholds.band(session.risk_score)
    return Alert(
        rule=rule,
        kind=rule.kind,
        dedupe_key=dedupe_key(rule.kind, session.session_id),
        user_id=watched_user.user_id,
        watched_user=watched_user,
        session_id=session.session_id,
        title=title,
        details={
            "score": session.risk_score,
            "band": band.value if band else None,
            "recommended_action": session.recommended_action,
            "checks_detected": detected_checks(session),
            **details,
        },
        created_at=now,
    )


def block_band_alerts(rule, watched_user, new_sessions, changes, sessions, now):
    band = current_thresholds().band
    entered = [s for s in new_sessions if band(s.risk_score) == Band.BLOCK]
    entered += [
        sessions[c.session_id]
        for c in changes
        if band(c.old_score) != Band.BLOCK and band(c.new_score) == Band.BLOCK
    ]
    return [
        session_alert(
            rule,
            watched_user,
            s,
            now,
            f"{watched_user.user_id}: session {s.session_id} entered the block "
            f"band (score {s.risk_score})",
        )
        for s in entered
    ]


def auto_reject_alerts(rule, watched_user, new_sessions, changes, sessions, now):
    rejected = [s for s in new_sessions if s.recommended_action == AUTO_REJECT_ACTION]
    rejected += [
        sessions[c.session_id]
        for c in changes
        if c.new_action == AUTO_REJECT_ACTION and c.old_action != AUTO_REJECT_ACTION
    ]
    return [
        session_alert(
            rule,
            watched_user,
            s,
            now,
            f"{watched_user.user_id}: session {s.session_id} is recommended for "
            "auto-reject",
        )
        for s in rejected
    ]


def score_rise_alerts(rule, watched_user, new_sessions, changes, sessions, now):
    alerts = []
    for change in changes:
        if change.old_score is None or change.new_score is None:
            continue
        rise = change.new_score - change.old_score
        if rise <= rule.threshold:
            continue
        alerts.append(
            session_alert(
                rule,
                watched_user,
                sessions[change.session_id],
                now,
                f"{watched_user.user_id}: score of session {change.session_id} "
                f"rose by {rise} points ({change.old_score} to {change.new_score})",
                old_score=change.old_score,
                rise=rise,
            )
        )
    return alerts


SESSION_RULES = {
    RuleKind.BLOCK_BAND: block_band_alerts,
    RuleKind.AUTO_REJECT: auto_reject_alerts,
    RuleKind.SCORE_RISE: score_rise_alerts,
}


def load_stored_sessions(watched_user, stored, now):
    """Return the sessions this store wrote, by ID: new and changed ones.

    store_sessions sets changed_at to the poll's time on every row it writes.
    """
    rows = Session.objects.filter(user_id=watched_user.user_id, changed_at=now)
    return {s.session_id: s for s in rows.only(*_SESSION_FIELDS)}


def first_detection_alerts(rule, watched_user, written, now):
    """Return alerts for checks Detected for the user for the first time.

    Marks every newly Detected check as seen, whether or not the rule is
    enabled or lists it, so changing the rule later never alerts on history.
    """
    first_session = {}
    for session in written.values():
        for name in detected_checks(session):
            if len(name) <= MAX_CHECK_NAME:
                first_session.setdefault(name, session)
    seen = set(
        DetectedCheck.objects.filter(
            user_id=watched_user.user_id, check_name__in=list(first_session)
        ).values_list("check_name", flat=True)
    )
    new_names = sorted(set(first_session) - seen)
    alerts = []
    if rule is not None and rule.enabled:
        watched_names = set(rule.check_names)
        for name in new_names:
            if watched_names and name not in watched_names:
                continue
            session = first_session[name]
            alert = session_alert(
                rule,
                watched_user,
                session,
                now,
                f"{watched_user.user_id}: first {name} detected, in session "
                f"{session.session_id}",
                check=name,
            )
            alert.dedupe_key = dedupe_key(rule.kind, watched_user.user_id, name)
            alerts.append(alert)
    return alerts, new_names


def mark_detected(user_id, names, now):
    DetectedCheck.objects.bulk_create(
        [
            DetectedCheck(user_id=user_id, check_name=n, first_seen_at=now)
            for n in names
        ],
        ignore_conflicts=True,
    )


def backfill_alert(rule, watched_user, stored, now):
    """Return one summary of a newly watched user's history, or None if empty."""
    stored_count = stored.new + stored.changed
    if not stored_count:
        return None
    thresholds = current_thresholds()
    counts = Session.objects.filter(user_id=watched_user.user_id).aggregate(
        total=Count("pk"),
        block=Count("pk", filter=thresholds.band_q(Band.BLOCK)),
        review=Count("pk", filter=thresholds.band_q(Band.REVIEW)),
        auto_reject=Count("pk", filter=Q(recommended_action=AUTO_REJECT_ACTION)),
    )
    return Alert(
        rule=rule,
        kind=rule.kind,
        # One summary per place on the watchlist: a re-added user gets another.
        dedupe_key=dedupe_key(rule.kind, watched_user.user_id, watched_user.pk),
        user_id=watched_user.user_id,
        watched_user=watched_user,
        title=(
            f"{watched_user.user_id}: {stored_count} historical sessions stored, "
            f"{counts['block']} in the block band, {counts['review']} in the "
            f"review band, {counts['auto_reject']} recommended for auto-reject"
        ),
        details={"stored": stored_count, **counts},
        created_at=now,
    )


def mark_history_detected(user_id, now):
    """Mark every check Detected in the user's stored sessions as already seen."""
    names = (
        SessionCheck.objects.filter(session__user_id=user_id, status=DETECTED)
        .values_list("name", flat=True)
        .distinct()
    )
    mark_detected(user_id, list(names), now)


def sync_failing_alert(rule, watched_user, result, now):
    """Return an alert once the user's current failure episode is long enough.

    An episode starts at the user's last successful sync, or when the user was
    added to the watchlist if none has succeeded since. Both come from the
    WatchedUser row, which is deleted on removal, so polls from an earlier
    time on the watchlist never count, and pruned PollRecords never shorten
    an episode. The episode's start identifies it, so the next success
    re-arms the rule.
    """
    if result.outcome == PollOutcome.SYNCED:
        return None
    # The signal carries the row as it was before this poll: read it again.
    row = (
        WatchedUser.objects.filter(pk=watched_user.pk)
        .values("last_synced_at", "added_at")
        .first()
    )
    if row is None:
        return None  # Removed from the watchlist during the poll.
    last_success = row["last_synced_at"]
    episode_start = last_success or row["added_at"]
    failing_for = now - episode_start
    if failing_for <= timedelta(minutes=rule.threshold):
        return None
    minutes = int(failing_for.total_seconds() // 60)
    return Alert(
        rule=rule,
        kind=rule.kind,
        dedupe_key=dedupe_key(
            rule.kind, watched_user.user_id, watched_user.pk, episode_start.isoformat()
        ),
        user_id=watched_user.user_id,
        watched_user=watched_user,
        title=f"{watched_user.user_id}: no successful sync for {minutes} minutes",
        details={
            "failing_since": episode_start.isoformat(),
            "last_synced_at": last_success.isoformat() if last_success else None,
            "last_outcome": result.outcome,
            "last_error": result.error,
        },
        created_at=now,
    )
