from django.urls import path

from workflow import views

app_name = "workflow"

urlpatterns = [
    path("", views.audit_list, name="audit_list"),
    # The user ID is a query parameter because IDs are arbitrary text.
    path("erase/", views.erase_user, name="erase_user"),
]
