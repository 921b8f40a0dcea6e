from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard.views import users, watchlist

urlpatterns = [
    path("", watchlist.watchlist, name="watchlist"),
    path("watchlist/add/", watchlist.watchlist_add, name="watchlist_add"),
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
    path("users/<int:pk>/", users.user_detail, name="user_detail"),
    path("users/<int:pk>/poll-now/", users.user_poll_now, name="user_poll_now"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
