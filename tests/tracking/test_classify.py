"""Machine-open flagging against real user agents (tests/tracking/user_agents.py): people are not flagged,
privacy prefetches, link scanners, previews and scripts are, each with its reason."""

from __future__ import annotations

import pytest

from maild.tracking.classify import image_proxy, is_machine
from tests.tracking.user_agents import MACHINES, PEOPLE, UserAgentCase


@pytest.mark.parametrize("case", PEOPLE + MACHINES, ids=[case[0] for case in PEOPLE + MACHINES])
def test_each_real_user_agent_gets_its_verdict(case: UserAgentCase) -> None:
    _who, kind, user_agent, ip, seconds, expected = case
    assert is_machine(user_agent, ip, seconds, kind, scanner_seconds=10.0) == expected


def test_the_list_is_realistic_in_size() -> None:
    assert len(PEOPLE) >= 15 and len(MACHINES) >= 20


def test_provider_image_proxies_are_named() -> None:
    gmail = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    assert image_proxy(gmail) == "gmail-image-proxy"
    assert image_proxy("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html") == \
        "yahoo-image-proxy"
    assert image_proxy("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0") is None
