"""Keyed UID replacement and pseudonyms (issue 19): deterministic under one key, unrelated under another,
valid UIDs of the 2.25 form (pydicom's validator and the UUID layout), a key file made once with 0600."""

from __future__ import annotations

import stat
import uuid

import pytest
from pydicom.uid import UID

from medview.io.deid.keys import DeidKeyError, load_key, map_uid, pseudonym

UIDS = ["1.2.840.113619.2.55.3.604688119.969.1268071029.320", "1.3.6.1.4.1.14519.5.2.1.7009.9004.1", "1.2.3"]


def test_uids_are_valid_deterministic_and_keyed() -> None:
    key, other = b"k" * 32, b"o" * 32
    mapped = [map_uid(u, key) for u in UIDS]
    assert mapped == [map_uid(u, key) for u in UIDS]  # same key, same UIDs (another run, another machine)
    assert len(set(mapped)) == len(UIDS) and not set(mapped) & set(UIDS)
    assert all(a != b for a, b in zip(mapped, [map_uid(u, other) for u in UIDS], strict=True))
    for m in mapped:
        assert m.startswith("2.25.") and len(m) <= 64 and UID(m).is_valid
        as_uuid = uuid.UUID(int=int(m[5:]))
        assert as_uuid.version == 8 and as_uuid.variant == uuid.RFC_4122
    assert map_uid(UIDS[0] + "\0", key) == mapped[0]  # the padding of an odd-length value is not part of it
    assert map_uid("", key) == ""


def test_pseudonyms() -> None:
    key = b"k" * 32
    a, b = pseudonym("TEST0001", key), pseudonym("TEST0002", key)
    assert a == pseudonym("TEST0001", key) != b and a.startswith("ANON") and len(a) == 16
    assert "TEST0001" not in a and pseudonym("TEST0001", b"o" * 32) != a


def test_the_projects_key_is_made_once_and_private(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDVIEW_DATA_DIR", str(tmp_path / "data"))
    first = load_key()
    assert len(first) == 32 and load_key() == first
    path = tmp_path / "data" / "deid.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    given = tmp_path / "shared.key"
    given.write_bytes(b"s" * 32)
    assert load_key(given) == b"s" * 32
    with pytest.raises(DeidKeyError, match="does not exist"):
        load_key(tmp_path / "missing.key")
    (tmp_path / "short.key").write_bytes(b"abc")
    with pytest.raises(DeidKeyError, match="at least 16"):
        load_key(tmp_path / "short.key")
