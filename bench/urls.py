"""The product's URLs plus an empty page, the floor of every page's cost.

The empty page passes through the same middleware, session and sign-in
check as every product page, and renders nothing, so its time is what
Django spends on any page before the page's own SQL and template.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import include, path

EMPTY_PAGE = "/_bench/empty/"


@login_required
def empty_page(request):
    return HttpResponse("")


urlpatterns = [
    path(EMPTY_PAGE.strip("/") + "/", empty_page),
    path("", include("dashboard.urls")),
]
