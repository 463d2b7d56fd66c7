"""Whether a mail's sender was authenticated, from the Authentication-Results (RFC 8601) of our own server.

Only headers whose authserv-id is one of `matching.trusted_authserv_ids` count, and of those only the
topmost block: from the first such header down to the next `Received:` header below it. Whatever lies
further down came with the mail from outside, where anyone can write `dmarc=pass` (your server should also
strip headers that carry its own id, as RFC 8601 section 5 asks).

The verdict, in this order:
- `fail`: DMARC failed; or, without a DMARC pass, SPF or DKIM failed (hard `fail`) and neither passed
  aligned with the From domain.
- `pass`: DMARC passed; or, without a DMARC verdict, DKIM (header.d / header.i) or SPF (smtp.mailfrom)
  passed for the From domain or a domain of it (`mail.example.com` for `example.com`, and the reverse).
- `none`: the trusted server said nothing conclusive (no header of it, `none`, `softfail`, `temperror` ...).
`fail` makes the mail unauthenticated; the others are handled as mail always was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import authres

PASS, FAIL, NONE = "pass", "fail", "none"
MAX_REASON = 500


@dataclass(frozen=True)
class AuthVerdict:
    status: str  # pass | fail | none
    reason: str  # what the trusted server said, e.g. "mx.example.com: dmarc=fail header.from=x.example"


def normalise_ids(ids: Iterable[str]) -> frozenset[str]:
    return frozenset(i.strip().lower().rstrip(".") for i in ids if i and i.strip())


def verdict(headers: Sequence[tuple[str, str]], trusted: frozenset[str], from_addr: str | None) -> AuthVerdict:
    """The verdict for a mail with these header fields (name, value; top first, as in the mail) and From."""
    block = _trusted_block(headers, trusted)
    if not block:
        return AuthVerdict(NONE, f"no Authentication-Results of {', '.join(sorted(trusted))}")
    results: list[tuple[str, str, dict[str, str]]] = []
    said: list[str] = []
    for server, parsed in block:
        for result in parsed:
            props = {f"{p.type}.{p.name}".lower(): str(p.value or "") for p in result.properties}
            results.append((str(result.method).lower(), str(result.result).lower(), props))
            shown = " ".join([f"{result.method}={result.result}", *(f"{k}={v}" for k, v in props.items()
                                                                     if k in ("header.from", "header.d",
                                                                              "smtp.mailfrom"))])
            said.append(f"{server}: {shown}")
    reason = "; ".join(said)[:MAX_REASON] or f"{block[0][0]}: no result"
    dmarc = {result for method, result, _ in results if method == "dmarc"}
    if "fail" in dmarc:
        return AuthVerdict(FAIL, reason)
    if "pass" in dmarc:
        return AuthVerdict(PASS, reason)
    domain = (from_addr or "").rpartition("@")[2].strip().lower().rstrip(".")
    if any(_aligned_pass(method, result, props, domain) for method, result, props in results):
        return AuthVerdict(PASS, reason)
    if any(method in ("spf", "dkim") and result == "fail" for method, result, _ in results):
        return AuthVerdict(FAIL, reason)
    return AuthVerdict(NONE, reason)


def _trusted_block(headers: Sequence[tuple[str, str]], trusted: frozenset[str]) -> list[tuple[str, list]]:
    block: list[tuple[str, list]] = []
    for name, value in headers:
        field = name.strip().lower()
        if field == "received" and block:
            break
        if field != "authentication-results":
            continue
        try:
            parsed = authres.AuthenticationResultsHeader.parse_value(" ".join(str(value).split()))
        except Exception:
            continue
        server = str(parsed.authserv_id or "").strip().lower().rstrip(".")
        if server in trusted:
            block.append((server, list(parsed.results)))
    return block


def _aligned_pass(method: str, result: str, props: dict[str, str], domain: str) -> bool:
    if result != "pass" or not domain:
        return False
    if method == "dkim":
        signer = props.get("header.d") or props.get("header.i", "").rpartition("@")[2]
    elif method == "spf":
        signer = props.get("smtp.mailfrom", "").rpartition("@")[2]
    else:
        return False
    signer = signer.strip().lower().rstrip(".")
    return "." in signer and (signer == domain or signer.endswith("." + domain) or domain.endswith("." + signer))
