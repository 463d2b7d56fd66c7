"""Fixtures shared with other test folders."""

from tests.outbound.conftest import smtp_sink  # noqa: F401  (a real SMTP server: aiosmtpd)
from tests.rules.test_packs_end_to_end import run_daemon  # noqa: F401  (the real daemon in a thread)
