"""Keys and paths: the key rules, base paths, the 1,024-byte limit, names every store must round-trip.

The behaviour checked here is section 2 of ``docs/contract.md``.
"""

from __future__ import annotations

import pytest

import kydb
from kydb.keys import MAX_PATH_BYTES

from ..objects import OBJDB_CONFIG
from ..plugins import count_calls
from .fixtures import Connect, StoreFixtures

__all__ = ["KeyTests"]


# Names that must survive every backend's escaping: SQL LIKE wildcards, glob
# characters, URL-special characters, quotes, non-ASCII, combining marks.
ODD_NAMES = [
    "with space",
    "100%",
    "a_b",
    "st*r",
    "q?",
    "#hash",
    "quo'te",
    'dq"',
    "back\\slash",
    "[x]",
    "a+b",
    "semi;colon",
    "pipe|bar",
    "amp&eq=",
    "tilde~",
    "é",
    "e\u0301",
    "日本語",
    "🙂",
    "a%b",
    "trailing ",
]


def _key_of_bytes(size: int, char: str = "x") -> str:
    """An object key (leading ``/`` included) of exactly ``size`` bytes of UTF-8."""
    width = len(char.encode())
    parts = []
    remaining = size
    while remaining > 0:
        remaining -= 1  # the '/'
        take = min(remaining, 100)
        if remaining - take == 1:
            take -= 1  # leave room for a non-empty last component
        count, extra = divmod(take, width)
        parts.append(char * count + "y" * extra)
        remaining -= take
    key = "/" + "/".join(parts)
    assert len(key.encode()) == size and all(parts), (size, key)
    return key


class KeyTests(StoreFixtures):
    """Keys and paths (contract §2)."""

    def test_leading_slash_is_optional(self, db: kydb.DB) -> None:
        db["a/b"] = 1
        assert db["/a/b"] == 1
        assert db.read("/a/b", reload=True) == 1
        db["/a/b"] = 2
        assert db.read("a/b", reload=True) == 2
        assert db.ls("/a") == ["b"] == db.ls("a") == db.ls("a/") == db.ls("/a/")

    def test_base_path_prefixes_every_key(self, db: kydb.DB, connect: Connect) -> None:
        home = connect(db.store_url.with_base(db.base_path + "/home/tony"))
        assert home.base_path == db.base_path + "/home/tony"
        home["/foo"] = 123
        assert db.read("/home/tony/foo", reload=True) == 123
        assert db.ls("/home/tony") == ["foo"]
        assert self.raw_get(db, db.base_path + "/home/tony/foo") is not None
        home.rm_tree("/")
        assert not db.exists("/home/tony/foo")

    @pytest.mark.parametrize(
        "key",
        [
            "",
            "/",
            "a//b",
            "a/./b",
            "a/../b",
            "..",
            ".hidden",
            "a/.b",
            "a/b/",
            "nul\x00x",
            "new\nline",
            "tab\tx",
            "del\x7fx",
            "c1\x85x",
            "lone\ud800surrogate",
            "non\ufffecharacter",
            "non\uffffcharacter",
        ],
    )
    def test_invalid_keys_raise_before_touching_the_store(self, db: kydb.DB, key: str) -> None:
        db["/existing"] = "kept"
        before = self.snapshot(db)
        with count_calls(db) as calls:
            for attempt in (
                lambda: db.set(key, 1),
                lambda: db.read(key),
                lambda: db.delete(key),
                lambda: db.exists(key),
                lambda: db.set_many({key: 1}),
            ):
                with pytest.raises(kydb.InvalidKey) as info:
                    attempt()
                assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
        assert sum(calls.values()) == 0
        assert self.snapshot(db) == before

    @pytest.mark.parametrize("key", ["/a/../b", "/a/./b", "/..", "/a/..", "/./a"])
    def test_dot_components_are_invalid_even_for_system_objects(self, db: kydb.DB, key: str) -> None:
        """``system_obj`` allows names starting with '.', never the path components '.' and '..'."""
        db["/b"] = "kept"
        for attempt in (
            lambda: db.set(key, 1, system_obj=True),
            lambda: db.read(key, system_obj=True),
            lambda: db.mkdir(key, system_obj=True),
            lambda: db.rm_tree(key, system_obj=True),
        ):
            with pytest.raises(kydb.InvalidKey, match=r"'\.\.?' is not allowed"):
                attempt()
        assert db.ls("/", system=True) == ["b"] and db.read("/b", reload=True) == "kept"

    def test_non_string_keys_are_invalid(self, db: kydb.DB) -> None:
        for key in (1, None, b"/a", ("a",)):
            with pytest.raises(kydb.InvalidKey):
                db[key] = 1  # type: ignore[index]
            with pytest.raises(kydb.InvalidKey):
                db.read(key)  # type: ignore[arg-type]

    def test_system_objects_need_system_obj(self, db: kydb.DB) -> None:
        with pytest.raises(kydb.InvalidKey):
            db["/.sys/x"] = 1
        db.set("/.sys/x", 1, system_obj=True)
        assert db.read("/.sys/x", system_obj=True) == 1
        assert db.read("/.sys/x", reload=True, system_obj=True) == 1
        with pytest.raises(kydb.InvalidKey):
            db.read("/.sys/x")
        assert ".sys/" not in db.ls("/") and ".sys/" in db.ls("/", system=True)  # hidden unless asked for
        assert db.ls("/.sys") == ["x"]
        db.delete("/.sys/x", system_obj=True)
        assert not db.exists("/.sys/x", system_obj=True)

    def test_system_names_are_hidden_unless_asked_for(self, db: kydb.DB) -> None:
        db.upload_objdb_config(OBJDB_CONFIG)
        db.set("/books/.meta", "x", system_obj=True)
        db["/books/b1"] = 1
        assert db.ls("/") == ["books/"] and db.ls("/books") == ["b1"]
        assert db.ls("/", system=True) == [".configs/", "books/"]
        assert db.ls("/books", system=True) == [".meta", "b1"]
        assert list(db.keys("/", recursive=True)) == ["/books/b1"]
        assert sorted(db.keys("/", recursive=True, system=True)) == ["/.configs/objdb", "/books/.meta", "/books/b1"]
        assert [(f, sub, objs) for f, sub, objs in db.walk("/")] == [("/", ["books"], []), ("/books/", [], ["b1"])]

    def test_full_path_limit_is_1024_bytes_of_utf8(self, db: kydb.DB) -> None:
        room = MAX_PATH_BYTES - len(db.base_path.encode())
        tops = []
        for char in ("x", "é", "日"):
            longest = _key_of_bytes(room, char)
            db[longest] = char
            assert db.read(longest, reload=True) == char
            assert db.exists(longest)
            assert db.ls(longest.rsplit("/", 1)[0]) == [longest.rsplit("/", 1)[1]]
            tops.append(longest.split("/")[1] + "/")
            too_long = _key_of_bytes(room + 1, char)
            for attempt in (lambda: db.set(too_long, char), lambda: db.read(too_long), lambda: db.mkdir(too_long)):
                with pytest.raises(kydb.InvalidKey):
                    attempt()
        assert db.ls("/") == sorted(tops)

    def test_odd_names_round_trip_through_set_ls_and_rm_tree(self, db: kydb.DB) -> None:
        for name in ODD_NAMES:
            db[f"/odd/{name}"] = name
            db[f"/odd/{name}/inner"] = name
        expected = sorted(ODD_NAMES + [n + "/" for n in ODD_NAMES])
        assert db.ls("/odd") == expected
        assert db.ls("/odd", include_dir=False) == sorted(ODD_NAMES)
        for name in ODD_NAMES:
            assert db.read(f"/odd/{name}", reload=True) == name
            assert db.ls(f"/odd/{name}") == ["inner"]
        db.refresh()
        assert db.get_many(f"/odd/{n}" for n in ODD_NAMES) == {f"/odd/{n}": n for n in ODD_NAMES}

    def test_wildcard_names_never_match_siblings(self, db: kydb.DB) -> None:
        everyone = ["a_b", "aXb", "a%b", "aZZb", "100%", "1000", "st*r", "star", "q?", "qq", "[x]", "x"]
        siblings = list(everyone)
        for name in siblings:
            db[f"/w/{name}/leaf"] = name
            db[f"/w/{name}x"] = name
        for victim in ("a_b", "a%b", "100%", "st*r", "q?", "[x]"):
            db.rm_tree(f"/w/{victim}")
            survivors = [s for s in siblings if s != victim]
            assert [n for n in db.ls("/w") if n.endswith("/")] == sorted(s + "/" for s in survivors)
            assert db.ls("/w", include_dir=False) == sorted(s + "x" for s in everyone)
            siblings = survivors
        for name in siblings:
            assert db.read(f"/w/{name}/leaf", reload=True) == name

    def test_folders_end_with_slash_objects_do_not(self, db: kydb.DB) -> None:
        db["/f/obj"] = 1
        db.mkdir("/f/dir")
        assert db.ls("/f") == ["dir/", "obj"]
