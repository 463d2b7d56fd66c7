"""Opens and clicks that were probably not a person: privacy prefetches, link scanners, previews, scripts.

They are flagged with a reason on the event, never dropped: the timeline keeps what happened. Checked against
real user agents in tests/tracking/user_agents.py. What counts as a person:

- Gmail's and Yahoo's image proxies fetch the pixel when the recipient opens the mail (then serve it from their
  cache): a person's open, seen through a proxy (`image_proxy` names it; IP and user agent are the proxy's).
  Gmail's *prefetch* (a fixed Edge 12 user agent with " Mozilla/5.0" appended) fetches on arrival: a machine.
- Apple Mail Privacy Protection fetches every image on delivery, from Apple's 17.0.0.0/8 or with the bare user
  agent "Mozilla/5.0": a machine, whatever the recipient does.
- Outlook for Windows loads images with its own user agent ("ms-office", "Microsoft Outlook"): a person's open.
  A *click* with it, or with any non-browser agent, is Office or a server checking the link first: the person's
  click arrives from their browser.
- Scanners that pose as a browser (Microsoft Defender Safe Links, Proofpoint, Mimecast detonation) cannot be
  told by their user agent; they fetch within seconds of delivery, which `scanner_seconds` catches.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

_APPLE_NETS = (ipaddress.ip_network("17.0.0.0/8"),)
_BARE = "mozilla/5.0"
_GMAIL_PREFETCH = "edge/12.246 mozilla/5.0"
_PROXIES = (("googleimageproxy", "gmail-image-proxy"), ("yahoomailproxy", "yahoo-image-proxy"))
_OFFICE = ("ms-office", "microsoft office", "microsoft outlook")
# "...bot" as a word (Googlebot/2.1, Slackbot-LinkExpanding, "; bot;"), but not the Cubot phone brand.
_BOT = re.compile(r"(?<!cu)bot(?![a-z])")
# Lower-case substrings of user agents of mail security gateways, link previewers and scripts.
_SCANNERS = (
    "barracuda", "proofpoint", "mimecast", "symantec", "trend micro", "trendmicro", "fortinet", "fortimail",
    "forcepoint", "ironport", "sophos", "mcafee", "zscaler", "safelinks", "microsoft exchange", "dataaccessd",
    "crawler", "spider", "preview", "scanner", "headless", "facebookexternalhit", "whatsapp", "python-requests",
    "python-urllib", "python-httpx", "aiohttp", "curl/", "wget/", "go-http-client", "java/", "okhttp", "libwww",
    "apache-httpclient", "node-fetch", "axios/", "zgrab",
)


def image_proxy(user_agent: str | None) -> str | None:
    """The mail provider's image proxy that fetched a pixel for a person (Gmail, Yahoo), if any."""
    lowered = (user_agent or "").lower()
    return next((name for needle, name in _PROXIES if needle in lowered), None)


def is_machine(user_agent: str | None, ip: str | None, seconds_since_sent: float | None, kind: str,
               scanner_seconds: float) -> str | None:
    """Why this open ("o") or click ("c") looks automated, or None if it looks like a person."""
    ua = (user_agent or "").strip()
    lowered = ua.lower()
    if not ua:
        return "no-user-agent"
    if kind == "o":
        if lowered == _BARE or _in_nets(ip, _APPLE_NETS):
            return "apple-mail-privacy-protection"
        if lowered.endswith(_GMAIL_PREFETCH):
            return "gmail-prefetch"
    else:
        if lowered == _BARE:
            return "scanner:bare-user-agent"
        if image_proxy(ua):
            return "scanner:image-proxy"
        if any(needle in lowered for needle in _OFFICE):
            return "scanner:microsoft-office"
    if _BOT.search(lowered):
        return "scanner:bot"
    for needle in _SCANNERS:
        if needle in lowered:
            return f"scanner:{needle.strip('/')}"
    if seconds_since_sent is not None and seconds_since_sent < scanner_seconds:
        return f"within-{scanner_seconds:g}s-of-sending"
    return None


@lru_cache(maxsize=4096)
def _in_nets(ip: str | None, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in nets)
