"""The local store on a disk that fills up (`small_disk`: a 3 MB tmpfs): a put
that does not fit fails naming the object and the cause, and changes nothing stored before."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.storage import LocalStore, StorageError


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name.startswith(".tmp"))


def test_an_overwrite_that_does_not_fit_keeps_the_object_stored_before(small_disk: Path) -> None:
    # The old sidecar was deleted before the new bytes were written: when they did not fit,
    # the published file stayed on disk but the store no longer knew it (head None, not listed).
    store = LocalStore(small_disk / "storage")
    first = store.put_bytes(b"a" * 2**20, "campaigns/spot.mp4")
    with pytest.raises(StorageError) as info:
        store.put_bytes(b"b" * (5 * 2**19), "campaigns/spot.mp4")
    assert str(info.value) == (f"cannot store 'campaigns/spot.mp4' in {store.root}: "
                               "No space left on device")
    assert store.head("campaigns/spot.mp4") == first
    assert store.list("campaigns/") == ["campaigns/spot.mp4"]
    copy = store.get_file("campaigns/spot.mp4", small_disk / "copy.mp4")
    assert copy.read_bytes() == b"a" * 2**20
    assert _leftovers(small_disk) == []


def test_a_new_object_that_does_not_fit_leaves_nothing(small_disk: Path) -> None:
    store = LocalStore(small_disk / "storage")
    with pytest.raises(StorageError, match="No space left on device"):
        store.put_bytes(b"c" * (4 * 2**20), "renders/clip.npz")
    assert store.head("renders/clip.npz") is None and store.list() == []
    assert _leftovers(small_disk) == []
    # and the space is back: a put that fits now succeeds
    assert store.put_bytes(b"d" * 2**20, "renders/clip.npz").size_bytes == 2**20
