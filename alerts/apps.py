from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self):
        from alerts import receivers
        from roundtable_sync.signals import poll_recorded, sessions_stored
        from workflow.signals import retention_applied, user_erased

        user_erased.connect(
            receivers.erase_user_alerts, dispatch_uid="alerts.user_erased"
        )
        retention_applied.connect(
            receivers.expire_alerts, dispatch_uid="alerts.retention_applied"
        )
        sessions_stored.connect(
            receivers.on_sessions_stored, dispatch_uid="alerts.sessions_stored"
        )
        poll_recorded.connect(
            receivers.on_poll_recorded, dispatch_uid="alerts.poll_recorded"
        )
