from django.urls import path

from reviews import views

app_name = "reviews"

urlpatterns = [
    path("queue/", views.queue, name="queue"),
    path("queue/decide/", views.queue_decide, name="queue_decide"),
    # Session IDs are arbitrary text, so the ID is a POST field.
    path("sessions/decide/", views.decide_session, name="decide_session"),
    path("users/<int:pk>/decide/", views.decide_user, name="decide_user"),
    path("calibration/", views.calibration_page, name="calibration"),
    path("calibration/adopt/", views.adopt_thresholds, name="adopt_thresholds"),
]
