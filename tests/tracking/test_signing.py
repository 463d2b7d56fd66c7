from __future__ import annotations

from pathlib import Path

import pytest

from maild.config import ConfigError, TrackingConfig
from maild.tracking.signing import load_secret, sign, verify

SECRET = b"0123456789abcdef-test-secret"


def test_round_trip_open_and_click() -> None:
    opened = sign(SECRET, "o", "tok_en-123", None)
    clicked = sign(SECRET, "c", "tok_en-123", 7)
    assert verify(SECRET, opened) == ("o", "tok_en-123", None)
    assert verify(SECRET, clicked) == ("c", "tok_en-123", 7)
    for value in (opened, clicked):
        assert len(value) < 60
        assert all(ch.isalnum() or ch in "-_." for ch in value)


def test_any_alteration_fails() -> None:
    value = sign(SECRET, "c", "abcdefgh", 3)
    for index, char in enumerate(value):
        for replacement in {"A", "0", ".", "-", "z"} - {char}:
            altered = value[:index] + replacement + value[index + 1:]
            assert verify(SECRET, altered) is None, altered
    assert verify(SECRET, value[:-1]) is None
    assert verify(SECRET, value + "A") is None
    assert verify(SECRET, "c.abcdefgh.4." + value.rsplit(".", 1)[1]) is None
    assert verify(SECRET, "o.abcdefgh." + value.rsplit(".", 1)[1]) is None
    assert verify(b"another-secret-of-enough-length", value) is None
    assert verify(SECRET, "") is None
    assert verify(SECRET, "ünïcode.x.y") is None


def test_sign_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        sign(SECRET, "o", "has.dot", None)
    with pytest.raises(ValueError):
        sign(SECRET, "c", "abcdefgh", None)
    with pytest.raises(ValueError):
        sign(SECRET, "o", "abcdefgh", 1)
    with pytest.raises(ValueError):
        sign(b"", "o", "abcdefgh", None)


def test_load_secret_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SECRET", "s" * 32)
    assert load_secret(TrackingConfig(secret_env="T_SECRET"), tmp_path) == b"s" * 32
    (tmp_path / "secret").write_text("f" * 32 + "\n")
    monkeypatch.delenv("T_SECRET")
    assert load_secret(TrackingConfig(secret_env="T_SECRET", secret_file="secret"), tmp_path) == b"f" * 32


def test_load_secret_missing_is_a_clear_error_without_the_value(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_SECRET", raising=False)
    with pytest.raises(ConfigError, match="T_SECRET"):
        load_secret(TrackingConfig(secret_env="T_SECRET"), tmp_path)
    with pytest.raises(ConfigError, match="cannot read secret_file"):
        load_secret(TrackingConfig(secret_env=None, secret_file="nope"), tmp_path)
    assert load_secret(TrackingConfig(enabled=False, secret_env="T_SECRET"), tmp_path) == b""
    monkeypatch.setenv("T_SECRET", "short-value")
    with pytest.raises(ConfigError, match="too short") as info:
        load_secret(TrackingConfig(secret_env="T_SECRET"), tmp_path)
    assert "short-value" not in str(info.value)


def test_load_secret_reads_only_a_small_regular_file(tmp_path: Path) -> None:
    """`secret_file: /dev/zero` or a huge file is refused at once, not read until memory runs out."""
    with pytest.raises(ConfigError, match="not a regular file"):
        load_secret(TrackingConfig(secret_env=None, secret_file="/dev/zero"), tmp_path)
    (tmp_path / "big").write_bytes(b"x" * (1 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_secret(TrackingConfig(secret_env=None, secret_file="big"), tmp_path)
