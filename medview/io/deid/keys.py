"""The keyed, deterministic replacements of de-identification: UIDs and patient pseudonyms.

A UID becomes ``2.25.<n>`` where ``n`` is a 128-bit integer made from HMAC-SHA-256 of the UID under the project's
secret key, with the version and variant bits of an RFC 9562 version-8 (custom) UUID set, so that the result is
the UUID-derived form PS3.5 B.2 allows.  The same UID under the same key gives the same result in every file,
series, run and machine sharing the key, which keeps references (Referenced SOP Instance UID, Frame of
Reference UID, ...) consistent; another key gives unrelated UIDs.  Without the key the mapping cannot be
inverted or recomputed.

The key is 32 random bytes: a key file the user gives, or ``deid.key`` in medview's data folder, made on
first use with permissions 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from medview.core.errors import MedviewError
from medview.core.resources import data_dir

KEY_NAME = "deid.key"
KEY_BYTES = 32


class DeidKeyError(MedviewError):
    """The de-identification key cannot be read or made."""


def default_key_path() -> Path:
    return data_dir() / KEY_NAME


def load_key(path: str | Path | None = None, create: bool = True) -> bytes:
    """The secret key from ``path`` (a key file the user gives: it must exist) or the data folder's
    ``deid.key`` (made when missing and ``create``)."""
    given = path is not None
    target = Path(path) if given else default_key_path()
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        if given or not create:
            raise DeidKeyError(f"The de-identification key file {target} does not exist") from None
        return _make_key(target)
    except OSError as exc:
        raise DeidKeyError(f"Cannot read the de-identification key file {target}: {exc.strerror or exc}") from None
    if len(data) < 16:
        raise DeidKeyError(f"The de-identification key file {target} holds {len(data)} bytes; a key needs at least 16")
    return data


def _make_key(target: Path) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return target.read_bytes()
    except OSError as exc:
        raise DeidKeyError(f"Cannot create the de-identification key file {target}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def _digest(key: bytes, purpose: bytes, value: str) -> bytes:
    return hmac.new(key, purpose + b"\0" + value.encode("utf-8"), hashlib.sha256).digest()


def map_uid(uid: str, key: bytes) -> str:
    """The replacement of ``uid`` under ``key`` (the same input, the same output); '' stays ''."""
    text = uid.strip().rstrip("\0")
    if not text:
        return ""
    raw = bytearray(_digest(key, b"uid", text)[:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8: custom
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant: RFC 9562
    return f"2.25.{int.from_bytes(raw, 'big')}"


def pseudonym(patient_id: str, key: bytes, prefix: str = "ANON") -> str:
    """A keyed pseudonym for a patient ID (16 characters, fits LO and SH): the same patient, the same one."""
    digest = _digest(key, b"patient", patient_id.strip())
    return f"{prefix}{int.from_bytes(digest[:8], 'big') % 10**12:012d}"
