"""The alert inbox, the rules editor and the webhook endpoints."""

from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts.forms import RuleForm, WebhookForm
from alerts.links import alert_path
from alerts.models import Alert, AlertRule, WebhookEndpoint
from alerts.webhooks import MAX_ATTEMPTS, SIGNATURE_HEADER, generate_secret
from workflow import audit
from workflow.permissions import analyst_required

PAGE_SIZE = 50
SHOW_CHOICES = ("unread", "all")


@login_required
@require_GET
def inbox(request):
    show = request.GET.get("show")
    if show not in SHOW_CHOICES:
        show = "all"
    alerts = Alert.objects.all()
    if show == "unread":
        alerts = alerts.filter(read_at__isnull=True)
    page = Paginator(alerts, PAGE_SIZE).get_page(request.GET.get("page"))
    for alert in page:
        alert.link = alert_path(alert)
    return render(request, "alerts/inbox.html", {"page": page, "show": show})


def _back_to_inbox(request):
    show = request.POST.get("show")
    url = reverse("alerts:inbox")
    return redirect(f"{url}?show={show}" if show in SHOW_CHOICES else url)


@login_required
@analyst_required
@require_POST
def mark_read(request, pk):
    alert = get_object_or_404(Alert, pk=pk)
    marked = Alert.objects.filter(pk=pk, read_at__isnull=True).update(
        read_at=timezone.now(), read_by=request.user
    )
    if marked:
        audit.record(request.user, "alert_read", f"alert {alert.pk}")
    return _back_to_inbox(request)


@login_required
@analyst_required
@require_POST
def mark_all_read(request):
    marked = Alert.objects.filter(read_at__isnull=True).update(
        read_at=timezone.now(), read_by=request.user
    )
    if marked:
        audit.record(request.user, "alerts_read", "all unread alerts", count=marked)
    messages.success(request, f"Marked {marked} alert(s) as read.")
    return _back_to_inbox(request)


@login_required
@require_GET
def rules(request):
    context = {
        "rules": AlertRule.objects.prefetch_related("webhooks"),
        "endpoints": WebhookEndpoint.objects.all(),
    }
    return render(request, "alerts/rules.html", context)


@login_required
@analyst_required
@require_http_methods(["GET", "POST"])
def rule_edit(request, pk):
    rule = get_object_or_404(AlertRule, pk=pk)
    form = RuleForm(request.POST if request.method == "POST" else None, instance=rule)
    if form.is_bound and form.is_valid():
        rule = form.save(commit=False)
        rule.updated_at = timezone.now()
        rule.updated_by = request.user
        rule.save()
        form.save_m2m()
        audit.record(
            request.user,
            "rule_changed",
            rule.kind,
            changed=form.changed_data,
            enabled=rule.enabled,
            threshold=rule.threshold,
            check_names=rule.check_names,
            email_recipients=len(rule.email_recipients),
            webhooks=sorted(endpoint.pk for endpoint in rule.webhooks.all()),
        )
        messages.success(request, f"Saved the rule “{rule}”.")
        return redirect("alerts:rules")
    return render(request, "alerts/rule_form.html", {"rule": rule, "form": form})


@login_required
@require_GET
def webhooks(request):
    return render(
        request,
        "alerts/webhooks.html",
        {"endpoints": WebhookEndpoint.objects.prefetch_related("rules")},
    )


@login_required
@require_GET
def webhook_detail(request, pk):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    deliveries = endpoint.deliveries.select_related("alert").order_by(
        "-due_at", "-attempt", "-id"
    )
    page = Paginator(deliveries, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"endpoint": endpoint, "page": page, "max_attempts": MAX_ATTEMPTS}
    return render(request, "alerts/webhook_detail.html", context)


def _audit_webhook(request, endpoint, change, **details):
    audit.record(
        request.user,
        "webhook_changed",
        f"webhook {endpoint.pk}",
        change=change,
        name=endpoint.name,
        host=urlsplit(endpoint.url).hostname,
        enabled=endpoint.enabled,
        **details,
    )


def _show_secret(request, endpoint, secret):
    # The secret is shown in this response only, never stored in a message
    # or the session, and the page is not cached.
    context = {"endpoint": endpoint, "secret": secret, "header": SIGNATURE_HEADER}
    return render(request, "alerts/webhook_secret.html", context)


@never_cache
@login_required
@analyst_required
@require_http_methods(["GET", "POST"])
def webhook_add(request):
    form = WebhookForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.secret = generate_secret()
        endpoint.created_at = timezone.now()
        endpoint.created_by = request.user
        endpoint.save()
        _audit_webhook(request, endpoint, "created")
        return _show_secret(request, endpoint, endpoint.secret)
    return render(request, "alerts/webhook_form.html", {"form": form})


@login_required
@analyst_required
@require_http_methods(["GET", "POST"])
def webhook_edit(request, pk):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    form = WebhookForm(
        request.POST if request.method == "POST" else None, instance=endpoint
    )
    if form.is_bound and form.is_valid():
        endpoint = form.save()
        _audit_webhook(request, endpoint, "updated", changed=form.changed_data)
        messages.success(request, f"Saved the webhook “{endpoint.name}”.")
        return redirect("alerts:webhook_detail", endpoint.pk)
    context = {"form": form, "endpoint": endpoint}
    return render(request, "alerts/webhook_form.html", context)


@never_cache
@login_required
@analyst_required
@require_POST
def webhook_rotate(request, pk):
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    endpoint.secret = generate_secret()
    endpoint.save(update_fields=["secret"])
    _audit_webhook(request, endpoint, "secret_rotated")
    return _show_secret(request, endpoint, endpoint.secret)
