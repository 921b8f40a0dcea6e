"""Role checks for views: analysts act and export, viewers only read."""

from django.contrib.auth.decorators import permission_required

ANALYSTS_GROUP = "analysts"
VIEWERS_GROUP = "viewers"

ACT_PERMISSION = "workflow.act"
EXPORT_PERMISSION = "workflow.export"

# For views that change something, placed below @login_required so that an
# anonymous visitor gets the login page and a signed-in user without the
# permission gets 403.
analyst_required = permission_required(ACT_PERMISSION, raise_exception=True)
export_required = permission_required(EXPORT_PERMISSION, raise_exception=True)
