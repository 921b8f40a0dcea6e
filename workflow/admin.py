from django.contrib import admin

from workflow.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit trail, read-only for everyone, superusers included."""

    list_display = ["occurred_at", "actor_label", "action", "target"]
    list_filter = ["action", "actor_label"]
    search_fields = ["target", "actor_label"]
    date_hierarchy = "occurred_at"
    readonly_fields = ["occurred_at", "actor", "actor_label", "action", "target"]
    fields = [*readonly_fields, "details"]
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
