from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.views import (
    export,
    favicon,
    overview,
    polling,
    preferences,
    session_detail,
    sessions,
    tags,
    users,
    watchlist,
)

urlpatterns = [
    path("", overview.overview, name="overview"),
    path("watchlist/", watchlist.watchlist, name="watchlist"),
    path("watchlist/add/", watchlist.watchlist_add, name="watchlist_add"),
    path("watchlist/import/", watchlist.watchlist_import, name="watchlist_import"),
    path(
        "watchlist/<int:pk>/pause/", watchlist.watchlist_pause, name="watchlist_pause"
    ),
    path(
        "watchlist/<int:pk>/resume/",
        watchlist.watchlist_resume,
        name="watchlist_resume",
    ),
    path(
        "watchlist/<int:pk>/remove/",
        watchlist.watchlist_remove,
        name="watchlist_remove",
    ),
    path("tags/", tags.tag_list, name="tag_list"),
    path("tags/add/", tags.tag_add, name="tag_add"),
    path("tags/<int:pk>/pause/", tags.tag_pause, name="tag_pause"),
    path("tags/<int:pk>/resume/", tags.tag_resume, name="tag_resume"),
    path("tags/<int:pk>/remove/", tags.tag_remove, name="tag_remove"),
    path("users/<int:pk>/", users.user_detail, name="user_detail"),
    path("users/<int:pk>/poll-now/", users.user_poll_now, name="user_poll_now"),
    path("sessions/", sessions.session_list, name="session_list"),
    path("sessions/export.csv", export.session_export, name="session_export"),
    # Session IDs are arbitrary text, so the ID is a query parameter.
    path("sessions/detail/", session_detail.session_detail, name="session_detail"),
    path("preferences/", preferences.preferences, name="preferences"),
    path("polling/resume/", polling.polling_resume, name="polling_resume"),
    path("reviews/", include("reviews.urls")),
    path("alerts/", include("alerts.urls")),
    path("audit/", include("workflow.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("favicon.ico", favicon.favicon, name="favicon"),
]
