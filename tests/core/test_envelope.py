"""The stored form (kydb.envelope)."""

from __future__ import annotations

import pickle

import pytest

import kydb
from kydb import envelope


def test_header_then_pickle_protocol_5() -> None:
    blob = envelope.encode({"a": 1})
    assert blob[:4] == b"KYDB" and blob[4] == 1 and blob[5] == 0 and blob[6] == 0
    assert blob[7:9] == b"\x80\x05"  # pickle protocol 5
    assert envelope.decode(blob, "/k") == {"a": 1}


def test_dbobj_record_is_a_plain_dict() -> None:
    blob = envelope.encode_record(envelope.DbObjRecord("Greeter", "/g", {"name": "Mary"}))
    assert blob[5] & envelope.FLAG_DBOBJ
    assert pickle.loads(blob[envelope.HEADER_SIZE :]) == {
        "class_name": "Greeter", "key": "/g", "stored_dict": {"name": "Mary"}}
    assert envelope.decode(blob, "/g") == envelope.DbObjRecord("Greeter", "/g", {"name": "Mary"})


def test_an_unimportable_class_is_corrupt_value_not_key_error() -> None:
    blob = envelope.encode(kydb.NotFound("x"))
    broken = blob.replace(b"kydb.errors", b"kydb.nonexi")  # same length: framing intact
    with pytest.raises(kydb.CorruptValue, match="/k") as info:
        envelope.decode(broken, "/k")
    assert isinstance(info.value.__cause__, ImportError)


def test_malformed_record_is_corrupt() -> None:
    blob = envelope.encode(["not", "a", "record"])
    flagged = blob[:5] + bytes([envelope.FLAG_DBOBJ]) + blob[6:]
    with pytest.raises(kydb.CorruptValue, match="malformed"):
        envelope.decode(flagged, "/k")


def test_describe_reads_only_the_header() -> None:
    signed = envelope.Codec.from_options(signing_key="k" * 32, serializer="json").encode_record(
        envelope.DbObjRecord("Greeter", "/g", {"name": "Mary"})
    )
    assert envelope.describe(signed[: envelope.HEADER_SIZE]) == "json, signed, DbObj record"
    assert envelope.describe(envelope.encode(1)) == "pickle, unsigned"
    assert envelope.describe(b"\x00\x01") == "not kydb data"
    assert envelope.describe(b"KYDB\x09\x00\x00") == "unsupported kydb envelope (version 9, flags 0x0, serializer 0)"
