from __future__ import annotations

from pathlib import Path

from maild.store.blobs import BlobStore, sha256_hex


def test_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.put(b"hello")
    assert digest == sha256_hex(b"hello")
    assert store.put(b"hello") == digest
    assert store.get(digest) == b"hello"
    assert store.path(digest).relative_to(tmp_path).parts == (digest[:2], digest)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [digest]


def test_blobs_of_the_older_two_level_layout_are_read_and_not_written_again(tmp_path: Path) -> None:
    digest = sha256_hex(b"kept by an older maild")
    legacy = tmp_path / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"kept by an older maild")
    store = BlobStore(tmp_path)
    assert store.exists(digest)
    assert store.path(digest) == legacy
    assert store.get(digest) == b"kept by an older maild"
    assert store.put(b"kept by an older maild") == digest
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [legacy]


def test_no_temp_files_are_left_and_folders_are_private(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digests = [store.put(bytes([i]) * 1000) for i in range(50)]
    digest, size = store.put_stream(iter([b"a" * 10, b"b" * 10]))
    assert size == 20 and store.get(digest) == b"a" * 10 + b"b" * 10
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == sorted({*digests, digest})
    assert all(p.stat().st_mode & 0o077 == 0 for p in (tmp_path / "blobs").rglob("*"))
    store.flush()  # syncs the store's file system; a store never written to has nothing to sync
    BlobStore(tmp_path / "never-written").flush()
