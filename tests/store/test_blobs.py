from __future__ import annotations

from pathlib import Path

from maild.store.blobs import BlobStore, sha256_hex


def test_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == sha256_hex(b"hello")
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    assert store.path(digest).relative_to(tmp_path).parts[:2] == (digest[:2], digest[2:4])
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]
