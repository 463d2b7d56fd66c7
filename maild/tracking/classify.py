"""Opens and clicks that were probably not a person: privacy proxies, link scanners, instant fetches.

They are flagged with a reason on the event, never dropped: the timeline keeps what happened.
"""

from __future__ import annotations

import ipaddress

# Apple Mail Privacy Protection fetches images through Apple's proxies (Apple's 17.0.0.0/8) with this
# bare user agent; a real browser or mail client always adds details after "Mozilla/5.0".
_APPLE_UAS = ("Mozilla/5.0",)
_APPLE_NETS = (ipaddress.ip_network("17.0.0.0/8"),)
_PROXIES = (("googleimageproxy", "gmail-image-proxy"), ("yahoomailproxy", "yahoo-image-proxy"))
# Lower-case substrings of user agents of link scanners, previewers and scripts.
_SCANNERS = (
    "microsoft office", "ms-office", "barracuda", "proofpoint", "mimecast", "symantec", "trend micro",
    "fortinet", "forcepoint", "cisco", "bot", "crawler", "spider", "preview", "scanner", "headless",
    "facebookexternalhit", "python-requests", "python-urllib", "python-httpx", "aiohttp", "curl/", "wget/",
    "go-http-client", "java/", "okhttp", "libwww", "zgrab",
)


def is_machine(user_agent: str | None, ip: str | None, seconds_since_sent: float | None, kind: str,
               scanner_seconds: float) -> str | None:
    """Why this open ("o") or click ("c") looks automated, or None if it looks like a person."""
    ua = (user_agent or "").strip()
    lowered = ua.lower()
    if kind == "o":
        if ua in _APPLE_UAS:
            return "apple-mail-privacy-protection"
        if _in_nets(ip, _APPLE_NETS):
            return "apple-mail-privacy-protection"
    for needle, reason in _PROXIES:
        if needle in lowered:
            return reason
    if not ua:
        return "no-user-agent"
    for needle in _SCANNERS:
        if needle in lowered:
            return f"scanner:{needle.strip('/')}"
    if seconds_since_sent is not None and seconds_since_sent < scanner_seconds:
        return f"within-{scanner_seconds:g}s-of-sending"
    return None


def _in_nets(ip: str | None, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in nets)
