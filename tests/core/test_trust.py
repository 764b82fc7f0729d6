"""Signed blobs, restricted loading and plain-data serializers (kydb.envelope.Codec through kydb.connect)."""

from __future__ import annotations

import datetime
import pickle
import sys
from fractions import Fraction

import pytest

import kydb
from kydb import envelope
from kydb.testing import unique_name

KEY = "a-signing-key-of-enough-length-0001"


def fresh(**options: object) -> kydb.DB:
    return kydb.connect(f"memory://{unique_name('trust')}", **options)  # type: ignore[return-value]


def raw(db: kydb.BaseDB, key: str) -> bytes:
    return db.store.tree.objects[key]  # type: ignore[attr-defined, no-any-return]


def test_signing_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KYDB_SIGNING_KEY", f"{KEY}, second-key-for-verifying-only-99")
    db = fresh()
    db["/k"] = 1
    assert raw(db, "/k")[5] & envelope.FLAG_SIGNED
    monkeypatch.delenv("KYDB_SIGNING_KEY")
    other = kydb.connect(db._url, signing_key="second-key-for-verifying-only-99")
    with pytest.raises(kydb.CorruptValue, match="signature"):
        other.read("/k", reload=True)


def test_signature_covers_header_and_payload() -> None:
    db = fresh(signing_key=KEY)
    db["/k"] = "value"
    blob = raw(db, "/k")
    for tampered in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:5] + bytes([blob[5] | envelope.FLAG_DBOBJ]) + blob[6:]):
        db.store.kydb_put(items={"/k": tampered}, mtime_ns=0, indexes={}, expect={})  # type: ignore[attr-defined]
        with pytest.raises(kydb.CorruptValue, match="signature"):
            db.read("/k", reload=True)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"signing_key": "short"}, "at least 16"),
        ({"require_signed": True}, "needs a signing key"),
        ({"serializer": "yaml"}, "unknown serializer"),
    ],
)
def test_bad_options_are_refused_at_connect(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        fresh(**options)


def test_keys_never_appear_in_reprs_or_errors() -> None:
    db = fresh(signing_key=KEY)
    db["/k"] = 1
    db.store.kydb_put(items={"/k": b"KYDB\x01\x02\x00" + b"\x00" * 40}, mtime_ns=0, indexes={}, expect={})  # type: ignore[attr-defined]
    with pytest.raises(kydb.CorruptValue) as info:
        db.read("/k", reload=True)
    for text in (repr(db), repr(db._codec), str(info.value), db.url):
        assert KEY not in text


def test_pickled_db_keeps_its_options() -> None:
    db = fresh(signing_key=KEY, allowed_modules=["fractions"])
    assert pickle.loads(pickle.dumps(db)) is db


def test_a_db_cannot_be_stored_in_a_store() -> None:
    db = fresh()
    with pytest.raises(TypeError, match="credentials"):
        db["/x"] = {"handle": db}
    assert not db.exists("/x")


def test_restricted_loading_allows_listed_modules_only() -> None:
    writer = fresh()
    writer.set_many({"/fraction": Fraction(1, 3), "/plain": {"when": datetime.date(2026, 1, 2), "n": [1, 2]}})
    strict = kydb.connect(writer._url, allowed_modules=[])
    assert strict.read("/plain", reload=True) == {"when": datetime.date(2026, 1, 2), "n": [1, 2]}
    with pytest.raises(kydb.CorruptValue, match=r"refused to load global fractions\.Fraction"):
        strict.read("/fraction", reload=True)
    listed = kydb.connect(writer._url, allowed_modules=["fractions"])
    assert listed.read("/fraction", reload=True) == Fraction(1, 3)


def test_the_dbobj_config_does_not_widen_restricted_loading() -> None:
    writer = fresh()
    writer["/fraction"] = Fraction(1, 3)
    strict = kydb.connect(writer._url, allowed_modules=[])
    writer.upload_objdb_config({"Half": {"module_path": "fractions", "class_name": "Fraction"}})
    with pytest.raises(kydb.CorruptValue, match=r"refused to load global fractions\.Fraction"):
        strict.read("/fraction", reload=True)


def _global_blob(module: str, name: str) -> bytes:
    """A kydb blob whose protocol-4 pickle is just the global ``module``/``name`` (STACK_GLOBAL)."""
    text = b"".join(b"\x8c" + bytes([len(part.encode())]) + part.encode() for part in (module, name))
    return envelope.MAGIC + bytes((envelope.VERSION, 0, 0)) + b"\x80\x04" + text + b"\x93."


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("Codec", True),  # a class defined in the allowed module
        ("Iterable", False),  # a class it imported from collections.abc
        ("encode", False),  # a function defined there
        ("pickle", False),  # a module it imported
        ("pickle.loads", False),  # a dotted walk into what it imported
        ("Codec.from_options", False),  # a dotted walk into a class
    ],
)
def test_allowed_modules_hand_out_their_own_classes_only(name: str, allowed: bool) -> None:
    db = fresh()
    db.store.kydb_put(items={"/g": _global_blob("kydb.envelope", name)}, mtime_ns=0, indexes={}, expect={})  # type: ignore[attr-defined]
    reader = kydb.connect(db._url, allowed_modules=["kydb.envelope"])
    if allowed:
        assert reader.read("/g", reload=True) is envelope.Codec
    else:
        with pytest.raises(kydb.CorruptValue, match="refused to load global"):
            reader.read("/g", reload=True)


def test_numpy_arrays_load_when_numpy_is_allowed() -> None:
    np = pytest.importorskip("numpy")
    writer = fresh()
    writer["/a"] = np.arange(6).reshape(2, 3)
    writer["/s"] = np.float64(1.5)
    reader = kydb.connect(writer._url, allowed_modules=["numpy"])
    assert (reader.read("/a", reload=True) == np.arange(6).reshape(2, 3)).all()
    assert reader.read("/s", reload=True) == 1.5
    with pytest.raises(kydb.CorruptValue, match="refused"):
        kydb.connect(writer._url, allowed_modules=[]).read("/a", reload=True)


def test_a_codec_cannot_be_stored() -> None:
    db = fresh(signing_key=KEY)
    with pytest.raises(TypeError, match="signing keys"):
        db["/codec"] = {"codec": db._codec}
    assert not db.exists("/codec")
    assert pickle.loads(pickle.dumps(db._codec)) == db._codec  # but it travels with a pickled DB


def test_blobs_signed_before_keys_were_bound_need_legacy_signatures() -> None:
    db = fresh(signing_key=KEY)
    header = envelope.MAGIC + bytes((envelope.VERSION, envelope.FLAG_SIGNED, 0))
    payload = pickle.dumps("old", protocol=5)
    legacy = header + envelope._legacy_mac(KEY.encode(), header, payload) + payload
    db.store.kydb_put(items={"/old": legacy}, mtime_ns=0, indexes={}, expect={})  # type: ignore[attr-defined]
    with pytest.raises(kydb.CorruptValue, match="legacy_signatures=True"):
        db.read("/old", reload=True)
    migrating = kydb.connect(db._url, signing_key=KEY, legacy_signatures=True)
    assert migrating.read("/old", reload=True) == "old"
    assert envelope.describe(legacy) == "pickle, signed (legacy: not bound to its key)"
    migrating["/old"] = migrating.read("/old", reload=True)  # rewriting signs it the current way
    assert db.read("/old", reload=True) == "old"


def test_reseal_moves_a_signed_blob_to_another_key() -> None:
    codec = envelope.Codec.from_options(signing_key=KEY)
    blob = codec.encode({"v": 1}, "/a")
    moved = codec.reseal(blob, "/a", "/b", codec)
    assert codec.decode(moved, "/b") == {"v": 1}
    with pytest.raises(kydb.CorruptValue):
        codec.decode(moved, "/a")
    with pytest.raises(ValueError, match="signing key"):
        envelope.Codec().reseal(blob, "/a", "/b", codec)
    with pytest.raises(kydb.CorruptValue, match="signature"):
        codec.reseal(blob, "/x", "/b", codec)  # not the key it was signed for
    plain = envelope.Codec().encode(1, "/a")
    assert envelope.Codec().reseal(plain, "/a", "/b", envelope.Codec()) is plain


def test_json_serializer_writes_plain_data_only() -> None:
    db = fresh(serializer="json")
    value = {"book": "MYBOOK", "pv": 1.5, "legs": [1, {"x": None, "ok": True}]}
    db["/j"] = value
    assert raw(db, "/j")[6] == envelope.SERIALIZERS["json"]
    assert db.read("/j", reload=True) == value
    for bad in ((1, 2), {1: "int key"}, datetime.date(2026, 1, 1), {"nested": {3}}, b"bytes"):
        with pytest.raises(TypeError, match="json serializer"):
            db["/bad"] = bad
        assert not db.exists("/bad")


def test_one_store_holds_pickle_and_json_blobs() -> None:
    pickler = fresh()
    jsoner = kydb.connect(pickler._url, serializer="json")
    pickler["/p"] = {"a": (1, 2)}
    jsoner["/j"] = {"a": [1, 2]}
    assert pickler.read("/j", reload=True) == {"a": [1, 2]}
    assert jsoner.read("/p", reload=True) == {"a": (1, 2)}  # plain types, read with the restricted unpickler
    pickler["/custom"] = Fraction(1, 2)
    with pytest.raises(kydb.CorruptValue, match="refused"):
        jsoner.read("/custom", reload=True)


def test_json_serializer_stores_dbobj_records() -> None:
    db = fresh(serializer="json")
    db.upload_objdb_config({"Greeter": {"module_path": "kydb.walkthrough", "class_name": "Greeter"}})
    db.new("Greeter", "/g", name="Tony").write()
    assert db.read("/g", reload=True).greet() == "Hello Tony"


def test_msgpack_serializer() -> None:
    msgpack = pytest.importorskip("msgpack")
    db = fresh(serializer="msgpack")
    db["/m"] = {"blob": b"\x00\x01", "n": [1, 2.5, None]}
    assert raw(db, "/m")[6] == envelope.SERIALIZERS["msgpack"]
    assert msgpack.unpackb(raw(db, "/m")[7:]) == {"blob": b"\x00\x01", "n": [1, 2.5, None]}
    assert db.read("/m", reload=True) == {"blob": b"\x00\x01", "n": [1, 2.5, None]}


def test_msgpack_serializer_without_msgpack_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(ImportError, match="pip install msgpack"):
        fresh(serializer="msgpack")


def test_copies_to_another_key_are_signed_again_for_it() -> None:
    from kydb import transfer

    src = fresh(signing_key=KEY)
    src["/limits/test"] = {"limit": 1}
    dst = fresh(signing_key=KEY)
    transfer.copy_tree(src, "/limits", dst, "/archive/limits")
    assert dst.read("/archive/limits/test", reload=True) == {"limit": 1}
    same_key = fresh(signing_key=KEY)
    transfer.copy_tree(src, "/limits", same_key, "/limits")
    assert same_key.read("/limits/test", reload=True) == {"limit": 1}
    unsigned_dst = fresh()
    with pytest.raises(ValueError, match="signed again"):
        transfer.copy_tree(kydb.connect(src._url), "/limits", unsigned_dst, "/elsewhere")
    assert not unsigned_dst.exists("/elsewhere/test")
