"""Who sent a tracking request, as far as we keep it: the IP cut to its network prefix, and a client key.

The key (IP prefix + user agent, hashed) tells one client's repeated opens and clicks from another client's.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache


@lru_cache(maxsize=4096)  # one client sends many requests; parsing an address costs ~20 us
def truncate_ip(ip: str | None) -> str | None:
    """IPv4 with the last octet zeroed, IPv6 cut to its /48; None for no or an unparseable address."""
    try:
        address = ipaddress.ip_address((ip or "").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@lru_cache(maxsize=4096)
def client_key(ip: str | None, user_agent: str | None) -> str:
    """32 hex characters naming (IP prefix, user agent): the same for one client's repeats, short to index."""
    material = f"{truncate_ip(ip) or ip or ''}\x00{user_agent or ''}".encode("utf-8", "surrogateescape")
    return hashlib.sha256(material).hexdigest()[:32]
