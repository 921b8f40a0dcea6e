"""Validation of webhook URLs against requests to internal addresses.

Runs when an endpoint is saved and again before every delivery, because the
host's DNS records can change in between.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

# Cloud metadata services, named in the error so the reason is clear. Each is
# also outside the global address space, so the general rule rejects it too.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}


class UnsafeWebhookURL(ValueError):
    pass


def validate_webhook_url(url, resolve=socket.getaddrinfo):
    """Raise UnsafeWebhookURL unless ``url`` is http(s) to a public address.

    Hosts listed in WEBHOOK_ALLOWED_HOSTS skip the address check. Otherwise
    every address the host resolves to must be global unicast: private,
    loopback, link-local, multicast, reserved and metadata addresses are
    rejected, so a hostname with one internal record is rejected as a whole.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookURL("The URL must start with http:// or https://.")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeWebhookURL("The URL has no host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeWebhookURL(
            "The URL's port is not a number from 0 to 65535."
        ) from None
    allowed = {name.lower() for name in settings.WEBHOOK_ALLOWED_HOSTS}
    if host in allowed:
        return
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeWebhookURL(
            f"The host {host!r} could not be resolved: {error}."
        ) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        reason = rejection_reason(address)
        if reason:
            raise UnsafeWebhookURL(
                f"The host {host!r} resolves to {address}, {reason}. Webhooks may "
                "only reach public addresses unless the host is listed in "
                "WEBHOOK_ALLOWED_HOSTS."
            )


def rejection_reason(address):
    """Return why ``address`` is not a public unicast address, or ""."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or address.is_unspecified or not address.is_global:
        return "not a public address"
    return ""
