"""Integrity: signed blobs, key binding and restricted loading, with blobs planted in the store itself.

The behaviour checked here is section 11 of ``docs/contract.md``.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

import kydb
from kydb import envelope

from ..objects import OBJDB_CONFIG
from .fixtures import Connect, StoreFixtures

__all__ = ["TrustTests"]


class _CreatesFile:
    """Unpickling this creates a file: stands for any code an attacker's blob would run."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (self.path, "w")


def _global_call_blob(module: str, name: str, argument: str) -> bytes:
    """An unsigned kydb blob whose protocol-4 pickle calls ``module.name(argument)`` via STACK_GLOBAL."""

    def text(value: str) -> bytes:
        encoded = value.encode()
        return b"\x8c" + bytes([len(encoded)]) + encoded  # SHORT_BINUNICODE

    payload = b"\x80\x04" + text(module) + text(name) + b"\x93" + text(argument) + b"\x85R."
    return envelope.MAGIC + bytes((envelope.VERSION, 0, 0)) + payload


SIGNING_KEY = b"conformance-signing-key-0123456789"


OTHER_KEY = b"another-signing-key-for-rotation-42"


class TrustTests(StoreFixtures):
    """Signed blobs and restricted loading, with blobs planted in the backend's own storage."""

    def test_signing_reader_refuses_a_planted_blob_without_running_it(
        self, db: kydb.DB, connect: Connect, tmp_path: Any
    ) -> None:
        control = tmp_path / "control"
        pickle.loads(pickle.dumps(_CreatesFile(str(control))))  # the payload really runs code when unpickled
        assert control.exists()
        target = tmp_path / "pwned"
        planted = envelope.encode(_CreatesFile(str(target)))
        forged = planted[:5] + bytes([planted[5] | envelope.FLAG_SIGNED]) + planted[6:7] + b"\0" * 32 + planted[7:]
        signing = connect(db.store_url.raw, signing_key=SIGNING_KEY)
        for blob in (planted, forged):
            self.raw_put(db, self.full_path(db, "/planted"), blob)
            with pytest.raises(kydb.CorruptValue, match="/planted"):
                signing.read("/planted", reload=True)
        restricted = connect(db.store_url.raw, allowed_modules=[])
        self.raw_put(db, self.full_path(db, "/planted"), planted)
        with pytest.raises(kydb.CorruptValue, match="refused to load global"):
            restricted.read("/planted", reload=True)
        assert not target.exists()

    def test_the_dbobj_config_never_widens_restricted_loading(
        self, db: kydb.DB, connect: Connect, tmp_path: Any
    ) -> None:
        """Whoever writes the store controls the config: naming a module there must not make it loadable."""
        target = tmp_path / "pwned"
        planted = envelope.encode(_CreatesFile(str(target)))  # a global from the 'io' module
        db.upload_objdb_config({"X": {"module_path": "io", "class_name": "open"}, **OBJDB_CONFIG})
        self.raw_put(db, self.full_path(db, "/planted"), planted)
        restricting: list[dict[str, Any]] = [{"allowed_modules": []}, {"serializer": "json"}]
        for options in restricting:
            reader = connect(db.store_url.raw, **options)
            with pytest.raises(kydb.CorruptValue, match=r"refused to load global io\.open"):
                reader.read("/planted", reload=True)
        assert not target.exists()

    def test_allowed_modules_do_not_leak_what_they_import(self, db: kydb.DB, connect: Connect, tmp_path: Any) -> None:
        """``STACK_GLOBAL('allowed.module', 'os.mkdir')`` walks into what the module imported: refused."""
        allowed = "kydb.envelope"  # imports os, pickle and collections.abc's Iterable
        reader = connect(db.store_url.raw, allowed_modules=[allowed])
        target = tmp_path / "pwned"
        for name in ("os.mkdir", "Iterable", "pickle.loads"):
            self.raw_put(db, self.full_path(db, "/planted"), _global_call_blob(allowed, name, str(target)))
            with pytest.raises(kydb.CorruptValue, match="refused to load global"):
                reader.read("/planted", reload=True)
        assert not target.exists()

    def test_a_signature_is_bound_to_its_key(self, db: kydb.DB, connect: Connect) -> None:
        signing = connect(db.store_url.raw, signing_key=SIGNING_KEY)
        signing["/limits/test"] = {"limit": 10**9}
        signing["/limits/prod"] = {"limit": 10}
        moved = self.raw_get(db, self.full_path(db, "/limits/test"))
        assert moved is not None
        self.raw_put(db, self.full_path(db, "/limits/prod"), moved)
        with pytest.raises(kydb.CorruptValue, match=r"/limits/prod.*moved from another key"):
            signing.read("/limits/prod", reload=True)
        lenient = connect(db.store_url.raw, signing_key=SIGNING_KEY, require_signed=False)  # verifies what is signed
        with pytest.raises(kydb.CorruptValue, match="signature"):
            lenient.read("/limits/prod", reload=True)

    def test_a_reader_that_skips_unsigned_checks_still_verifies_signed_blobs(
        self, db: kydb.DB, connect: Connect
    ) -> None:
        signing = connect(db.store_url.raw, signing_key=SIGNING_KEY)
        signing["/signed"] = "genuine"
        blob = self.raw_get(db, self.full_path(db, "/signed"))
        assert blob is not None
        self.raw_put(db, self.full_path(db, "/signed"), blob[:-1] + bytes([blob[-1] ^ 1]))
        lenient = connect(db.store_url.raw, signing_key=SIGNING_KEY, require_signed=False)
        with pytest.raises(kydb.CorruptValue, match="signature"):
            lenient.read("/signed", reload=True)

    def test_signed_blobs_round_trip_and_rotate(self, db: kydb.DB, connect: Connect) -> None:
        old = connect(db.store_url.raw, signing_key=OTHER_KEY)
        old["/signed"] = {"v": 1}
        blob = self.raw_get(db, self.full_path(db, "/signed"))
        assert blob is not None and blob[5] & envelope.FLAG_SIGNED
        rotated = connect(db.store_url.raw, signing_key=[SIGNING_KEY, OTHER_KEY])
        assert rotated.read("/signed", reload=True) == {"v": 1}
        rotated["/signed"] = {"v": 2}  # now signed with the new key
        with pytest.raises(kydb.CorruptValue, match="signature"):
            old.read("/signed", reload=True)
        assert db.read("/signed", reload=True) == {"v": 2}  # a reader without keys does not verify
        db["/unsigned"] = "legacy"
        with pytest.raises(kydb.CorruptValue, match="not signed"):
            rotated.read("/unsigned", reload=True)
        lenient = connect(db.store_url.raw, signing_key=SIGNING_KEY, require_signed=False)
        assert lenient.read("/unsigned", reload=True) == "legacy"
