"""Validation of webhook URLs against requests to internal addresses.

Runs when an endpoint is saved and again before every delivery, because the
host's DNS records can change in between. The delivery then connects to an
address this check returned, never to a fresh DNS answer.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

# Cloud metadata services, named in the error so the reason is clear. Each is
# also outside the global address space, so the general rule rejects it too.
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("169.254.170.2"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("fd00:ec2::254"),
}
# The well-known NAT64 prefix: the last 32 bits are an IPv4 address
# that a NAT64 gateway connects to.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# Parsers disagree on these: urllib3 ends the host at a "\" and urlsplit does
# not, and urlsplit drops tabs and newlines that other parsers keep.
AMBIGUOUS_CHARACTERS = re.compile(r"[\\\s\x00-\x1f\x7f]")
# A host whose last label is a number is an IPv4 address to URL parsers and
# inet_aton, in forms such as 2130706433, 0x7f000001, 0177.0.0.1 or 127.1.
NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class UnsafeWebhookURL(ValueError):
    pass


@dataclass(frozen=True)
class WebhookTarget:
    """A validated webhook URL and the checked addresses to connect to."""

    scheme: str
    # Lowercase, and for an IPv6 address without brackets.
    host: str
    port: int
    # Path and query, sent as the request target.
    path: str
    addresses: tuple[str, ...]

    @property
    def host_header(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if self.scheme == "https" else 80
        return host if self.port == default_port else f"{host}:{self.port}"


def resolve(host, port):
    """Return the IP addresses ``host`` resolves to, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def validate_webhook_url(url):
    """Check ``url`` and return its WebhookTarget, or raise UnsafeWebhookURL.

    The URL must be http(s) with a host that urlsplit and urllib3 read the
    same way. Hosts listed in WEBHOOK_ALLOWED_HOSTS skip the address check.
    Otherwise every address the host resolves to must be global unicast:
    private, loopback, link-local, multicast, reserved and metadata addresses
    are rejected, so a hostname with one internal record is rejected as a whole.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookURL("The URL must start with http:// or https://.")
    host, port = _unambiguous_host(url, parts)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        addresses = resolve(host, port)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeWebhookURL(
            f"The host {host!r} could not be resolved: {error}."
        ) from None
    if not addresses:
        raise UnsafeWebhookURL(f"The host {host!r} resolves to no address.")

    allowed = {name.lower() for name in settings.WEBHOOK_ALLOWED_HOSTS}
    if host not in allowed:
        for address in addresses:
            reason = rejection_reason(ipaddress.ip_address(address.split("%")[0]))
            if reason:
                raise UnsafeWebhookURL(
                    f"The host {host!r} resolves to {address}, {reason}. Webhooks "
                    "may only reach public addresses unless the host is listed in "
                    "WEBHOOK_ALLOWED_HOSTS."
                )
    return WebhookTarget(parts.scheme, host, port, path, tuple(addresses))


def _unambiguous_host(url, parts):
    """Return the URL's host and port once both parsers agree on them."""
    if AMBIGUOUS_CHARACTERS.search(url):
        raise UnsafeWebhookURL(
            "The URL contains a backslash, whitespace or a control character."
        )
    if "@" in parts.netloc:
        raise UnsafeWebhookURL(
            "The URL must not contain a user name or password (an @ before the host)."
        )

    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeWebhookURL("The URL has no host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeWebhookURL(
            "The URL's port is not a number from 0 to 65535."
        ) from None

    try:
        other = parse_url(url)
    except LocationParseError:
        raise UnsafeWebhookURL("The URL could not be parsed.") from None
    other_host = (other.host or "").strip("[]").lower()
    other_port = other.port or (443 if parts.scheme == "https" else 80)
    if (other_host, other_port) != (host, port):
        raise UnsafeWebhookURL(
            f"The URL's host is ambiguous: read as {host!r} and as {other_host!r}."
        )
    if "%" in host:
        raise UnsafeWebhookURL(
            f"The host {host!r} must not contain a percent sign or an IPv6 zone."
        )
    _reject_noncanonical_ip(host)
    return host, port


def _reject_noncanonical_ip(host):
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return
    if NUMERIC_LABEL.match(host.rstrip(".").rsplit(".", 1)[-1]):
        raise UnsafeWebhookURL(
            f"The host {host!r} is not a valid IP address or host name: write an "
            "IPv4 address as four decimal numbers, such as 203.0.113.9."
        )


def embedded_ipv4(address):
    """Return the IPv4 addresses that traffic to an IPv6 ``address`` reaches.

    Covers IPv4-mapped (::ffff:0:0/96), 6to4 (2002::/16), Teredo (2001::/32,
    server and client) and NAT64 (64:ff9b::/96) addresses.
    """
    if address.version != 6:
        return []
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in NAT64_PREFIX:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ipv4 for ipv4 in embedded if ipv4 is not None]


def rejection_reason(address):
    """Return why ``address`` is not a public unicast address, or ""."""
    for ipv4 in embedded_ipv4(address):
        reason = rejection_reason(ipv4)
        if reason:
            return f"an IPv6 address that reaches {ipv4}, {reason}"
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
