"""Waiting in IDLE without polling: one poll() on the IMAP socket and on wake-up descriptors, until the server
reports something, a wake-up is set, or the time is up. A thread that waits here costs no CPU until then.

imapclient's own `idle_check(timeout)` only reads after the socket polls readable, so lines already in the
connection's read buffer (or decrypted bytes held by the TLS layer) would wait for the next packet; here the
buffers are drained before every wait. A closed connection (a server killed without a BYE) polls readable
or hung up forever while nothing can be read: that is reported as ConnectionError, not as "nothing yet".
"""

from __future__ import annotations

import select
import time
from collections.abc import Sequence
from typing import Protocol

from imapclient import IMAPClient
from imapclient.imapclient import _parse_untagged_response  # the parser idle_check uses for the same lines

from maild.imap.connection import is_keepalive

_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer closed its side
_HUNG_UP = select.POLLHUP | select.POLLERR | select.POLLNVAL | _RDHUP
EMPTY_READS_CLOSED = 3  # readable this many times in a row with nothing to read: the connection is gone


class HasFileno(Protocol):
    def fileno(self) -> int: ...


def wait_in_idle(client: IMAPClient, wakeups: Sequence[HasFileno], timeout: float) -> list[tuple]:
    """Wait (the client already in IDLE) at most `timeout` seconds; return what the server reported other than
    keep-alives, or [] when a wake-up was set or the time ran out. Raises ConnectionError when the connection
    is closed."""
    deadline = time.monotonic() + max(0.0, timeout)
    sock = client.socket()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | _RDHUP)
    woken = {wakeup.fileno() for wakeup in wakeups}
    for fd in woken:
        poller.register(fd, select.POLLIN)
    empty_reads = 0
    while True:
        responses = read_idle_responses(client)
        news = [response for response in responses if not is_keepalive(response)]
        if news:
            return news
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return []
        events = dict(poller.poll(remaining * 1000))
        if any(fd in events for fd in woken):
            return []
        mask = events.get(sock.fileno(), 0)
        if not mask:
            continue  # the time is up: looked at once more above
        responses = read_idle_responses(client)
        news = [response for response in responses if not is_keepalive(response)]
        if news:
            return news
        if responses:
            empty_reads = 0
            continue
        empty_reads += 1
        if mask & _HUNG_UP or empty_reads >= EMPTY_READS_CLOSED:
            raise ConnectionError("the IMAP connection was closed during IDLE")


def read_idle_responses(client: IMAPClient) -> list[tuple]:
    """Every complete response line the server sent during IDLE that is already here (in the read buffer, the
    TLS layer or the socket), parsed as `idle_check` parses them; never waits."""
    sock = client.socket()
    sock.settimeout(None)
    sock.setblocking(False)
    responses = []
    try:
        while True:
            try:
                line = client._imap._get_line()
            except OSError:  # nothing more yet (a TLS socket's "want read", a timeout)
                break
            except IMAPClient.AbortError as exc:
                if "EOF" in str(exc.args[0]):  # a plain socket's "nothing more yet" reads as EOF too
                    break
                raise
            responses.append(_parse_untagged_response(line))
        return responses
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
