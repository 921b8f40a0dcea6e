from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Risk dashboard"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from dashboard.idle_sessions import stamp_session_at_login

        user_logged_in.connect(
            stamp_session_at_login, dispatch_uid="dashboard.stamp_session_at_login"
        )
