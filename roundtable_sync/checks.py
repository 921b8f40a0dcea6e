"""The checks Roundtable documents, in the order its API reference lists them.

The API adds checks over time, so stored data may hold names not listed here;
those are kept and shown after the documented ones.
"""

from roundtable_sync.models import CheckGroup

DOCUMENTED_CHECKS = {
    CheckGroup.BIOMETRIC: {
        "agent_behavior": "A model saw automated patterns across the behavioural "
        "data. Runs on desktop only, so often Unknown on mobile.",
        "programmatic_typing": "Typing rhythm too regular for a person.",
        "teleporting_mouse": "The cursor jumped between places without moving "
        "through the space between.",
        "no_corrections": "Text was entered without any correction or backspace.",
        "all_pasted": "All text answers were pasted rather than typed.",
        "jump_scrolling": "Scrolling happened only in large jumps.",
        "centered_clicks": "Clicks landed exactly at element centres.",
        "programmatic_clicking": "Clicks were issued by script, not by a person.",
        "external_input": "The visitor left the tab and pasted input on return.",
    },
    CheckGroup.DEVICE: {
        "bot": "The browser is driven by an automation framework such as "
        "Selenium or Playwright.",
        "virtual_machine": "The browser runs in a remote, virtualised or "
        "sandboxed environment.",
        "software_renderer": "Graphics are rendered in software (SwiftShader, "
        "llvmpipe), typical of headless or virtual browsers.",
        "vpn": "The IP address belongs to a VPN or hosting provider.",
        "tor": "The connection comes from a Tor exit node.",
        "location_spoofing": "The browser's location conflicts with the IP's, "
        "or looks simulated.",
    },
}


def ordered_check_keys(present):
    """Order (group, name) pairs: documented ones first, then the rest by name."""
    documented = [
        (group, name)
        for group, checks in DOCUMENTED_CHECKS.items()
        for name in checks
        if (group, name) in present
    ]
    others = sorted(
        (key for key in present if key not in documented),
        key=lambda key: (key[1], key[0]),
    )
    return documented + others
