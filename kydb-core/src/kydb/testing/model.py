"""A model check: random operation sequences against a kydb DB and a plain model of the contract.

:func:`check_against_model` drives a Hypothesis ``RuleBasedStateMachine``
through set / read / read(reload) / delete / exists / mkdir / rmdir /
rm_tree / ls / is_dir / refresh / cache_context and the conditional writes
(``set`` with ``if_version``/``if_absent``, ``delete`` with ``if_version``,
fresh and stale versions) with fuzzed keys (odd
characters, control characters, dot components, paths near the 1,024-byte
limit, deep nesting) and values, comparing every result and every raised
error type with an in-memory model written from ``docs/contract.md`` alone (it does not
use kydb's key validation).  Needs ``hypothesis`` (``kydb-core[testing]``).

Folders follow the contract's rule on every store: a folder stays, empty,
after the objects below it are deleted, until ``rmdir`` or ``rm_tree``
removes it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import kydb

__all__ = ["CONDITIONAL_OUTCOMES", "EVERY_OUTCOME", "assert_exercised", "check_against_model"]

#: What a run must reach for its agreement with the model to mean something.
EVERY_OUTCOME = (
    "set -> ok", "set -> InvalidKey", "read -> ok", "read -> NotFound", "exists -> ok", "delete -> ok",
    "delete -> NotFound", "mkdir -> ok", "rmdir -> ok", "rmdir -> FolderNotEmpty", "rmdir -> NotFound",
    "rm_tree -> ok", "rm_tree -> NotFound", "ls -> ok", "is_dir -> ok",
)  # fmt: skip


#: What a run on a store with conditional writes must reach as well (others must refuse them).
CONDITIONAL_OUTCOMES = ("set_if -> ok", "set_if -> Conflict", "delete_if -> ok", "delete_if -> Conflict")


def assert_exercised(stats: Counter[str]) -> None:
    """Fail unless the run that returned ``stats`` reached every outcome it should.

    That is :data:`EVERY_OUTCOME`, and :data:`CONDITIONAL_OUTCOMES` on a store
    with conditional writes — or, on one without, their refusal.
    """
    refused = stats["set_if -> ConditionalWritesNotSupported"] and stats["delete_if -> ConditionalWritesNotSupported"]
    wanted = [*EVERY_OUTCOME, *([] if refused else CONDITIONAL_OUTCOMES)]
    missing = [outcome for outcome in wanted if not stats[outcome]]
    assert not missing, f"the model check never reached {missing}: {dict(stats)}"


_NAMES = ["a", "b", "c", "a_b", "a%b", "100%", "é", "e\u0301", "日本", "sp ace", "x*?", "Z", "trail "]
_BAD = ["", ".", "..", ".hidden", "nul\x00x", "tab\tx", "del\x7f", "non\ufffe"]
_LONG = "L" * 250

# Mostly a few common names, so operations collide; sometimes anything, a bad or a long component.
component = st.one_of(
    *[st.sampled_from(_NAMES)] * 12,
    # any printable character (control characters come from _BAD, so most of these names are valid)
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="/").filter(
            lambda ch: not unicodedata.category(ch).startswith("C")
        ),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(_BAD),
    st.just(_LONG),
)
fresh_key_texts: st.SearchStrategy[str] = st.builds(
    lambda lead, parts: ("/" if lead else "") + "/".join(parts),
    st.booleans(),
    st.lists(component, min_size=1, max_size=4),
)
fresh_folder_texts: st.SearchStrategy[str] = st.one_of(
    *[
        st.builds(
            lambda lead, parts, trail: ("/" if lead else "") + "/".join(parts) + ("/" if trail else ""),
            st.booleans(),
            st.lists(component, min_size=1, max_size=3),
            st.booleans(),
        )
    ]
    * 6,
    st.sampled_from(["", "/"]),  # the root
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.sampled_from([0, "", False, b"", (), frozenset()]),
)
values = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4), st.tuples(inner, inner)
    ),
    max_leaves=12,
)


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except (KeyError, ValueError, kydb.Conflict, kydb.ConditionalWritesNotSupported) as exc:
        return "error", type(exc)


class _Model:
    """What the contract says a store holds: objects, and folders that exist."""

    def __init__(self, room: int) -> None:
        self.room = room  # bytes of UTF-8 a full key may have (a union's longest base path counts)
        self.objects: dict[str, Any] = {}
        self.kept: set[str] = set()  # folders that exist whatever the objects: made, or emptied by a delete

    # -- keys, by the contract's rules (not kydb's own implementation)

    def _valid_parts(self, parts: list[str], system: bool = False) -> bool:
        for part in parts:
            if part in ("", ".", "..") or (part.startswith(".") and not system):
                return False
            if any(unicodedata.category(ch) == "Cc" or ch in "\ufffe\uffff" for ch in part):
                return False
        return len(("/" + "/".join(parts)).encode()) <= self.room

    def key(self, text: str) -> str | None:
        """The object ``text`` names (a leading ``/`` is optional), or None if it is invalid."""
        parts = text.removeprefix("/").split("/")
        return "/" + "/".join(parts) if self._valid_parts(parts) else None

    def folder(self, text: str, system: bool = False) -> str | None:
        """The folder ``text`` names (leading and trailing ``/`` optional), or None if it is invalid.

        Listing and is_dir may name system folders (``/.configs``); writes may not.
        """
        body = text.removeprefix("/").removesuffix("/")
        if not body:
            return "/"
        parts = body.split("/")
        return "/" + body + "/" if self._valid_parts(parts, system) else None

    @staticmethod
    def ancestors(path: str) -> list[str]:
        """Every folder above ``path`` except the root: /a/b/c -> [/a/, /a/b/]."""
        parts = path.strip("/").split("/")
        return ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts))]

    def exists(self, folder: str) -> bool:
        return folder == "/" or any(p.startswith(folder) for p in (*self.objects, *self.kept))

    def children(self, folder: str) -> set[str]:
        names = set()
        for path in (*self.objects, *self.kept):
            if path.startswith(folder) and path != folder:
                head, sep, _ = path[len(folder) :].partition("/")
                names.add(head + sep)
        return names

    def orphan(self, path: str) -> None:
        """After ``path`` went away, the folders above it stay, empty or not."""
        self.kept.update(self.ancestors(path))

    def remove_tree(self, folder: str) -> None:
        self.objects = {k: v for k, v in self.objects.items() if not k.startswith(folder)}
        self.kept = {f for f in self.kept if not f.startswith(folder)}


class _Machine(RuleBasedStateMachine):
    new_db: Callable[[], kydb.BaseDB]
    outcomes: Counter[str]

    def __init__(self) -> None:
        super().__init__()
        self.db = type(self).new_db()
        self.outcomes["examples"] += 1
        self.model = _Model(self.db.key_room)
        # Names that existed at some point, so later operations aim at them, not only at fresh names.
        self.known_keys: list[str] = []
        self.known_folders: list[str] = []
        self.made_folders: list[str] = []  # by mkdir: likely empty, so rmdir can succeed

    def pick_key(self, data: st.DataObject) -> str:
        """Three times in four a key written before (it may since be gone), else a fresh one."""
        if self.known_keys and data.draw(st.integers(0, 3), label="reuse") > 0:
            return data.draw(st.sampled_from(self.known_keys), label="known key")
        return data.draw(fresh_key_texts, label="fresh key")

    def pick_folder(self, data: st.DataObject, made_first: bool = False) -> str:
        """A folder to act on; ``made_first`` also aims at folders made by mkdir (often still empty)."""
        source: str = data.draw(st.sampled_from(["made", "known", "fresh"] if made_first else ["known", "fresh"]))
        if source == "made" and self.made_folders:
            return data.draw(st.sampled_from(self.made_folders), label="made folder")
        if source == "known" and self.known_folders:
            return data.draw(st.sampled_from(self.known_folders), label="known folder")
        return data.draw(fresh_folder_texts, label="fresh folder")

    def remember(self, key_text: str | None = None, folder_text: str | None = None) -> None:
        if key_text is not None:
            self.known_keys.append(key_text)
            folder_text = key_text.rpartition("/")[0]
        while folder_text and folder_text.strip("/"):
            self.known_folders.append(folder_text)
            folder_text = folder_text.rstrip("/").rpartition("/")[0]

    def teardown(self) -> None:
        try:
            self.db.rm_tree("/")
        finally:
            self.db.close()  # each example connects a new DB: give its connections back

    def check(self, expected: tuple[str, Any], call: Callable[[], Any], rule: str) -> Any:
        actual = _outcome(call)
        assert actual == expected, f"{rule}: expected {expected!r}, got {actual!r}"
        self.outcomes[f"{rule} -> {expected[1].__name__ if expected[0] == 'error' else 'ok'}"] += 1
        return actual[1]

    @initialize()
    def start_empty(self) -> None:
        assert self.db.ls("/") == []
        # Every example makes and removes one empty folder, whatever sequence Hypothesis draws next: the
        # outcomes assert_exercised asks for do not depend on the Hypothesis version's choices.
        self._mkdir("/model-empty")
        self._rmdir("/model-empty")

    # -- objects

    @rule(data=st.data(), value=values)
    def set_value(self, data: st.DataObject, value: Any) -> None:
        self._set(self.pick_key(data), value)

    def _set(self, text: str, value: Any) -> None:
        key = self.model.key(text)
        if key is None:
            self.check(("error", kydb.InvalidKey), lambda: self.db.set(text, value), "set")
            return
        self.check(("ok", None), lambda: self.db.set(text, value), "set")
        self.model.objects[key] = value
        self.remember(key_text=text)

    @rule(data=st.data(), reload=st.booleans())
    def read(self, data: st.DataObject, reload: bool) -> None:
        self._read(self.pick_key(data), reload)

    def _read(self, text: str, reload: bool) -> None:
        key = self.model.key(text)
        if key is None:
            expected: tuple[str, Any] = ("error", kydb.InvalidKey)
        elif key in self.model.objects:
            expected = ("ok", self.model.objects[key])
        else:
            expected = ("error", kydb.NotFound)
        self.check(expected, lambda: self.db.read(text, reload=reload), "read")

    @rule(data=st.data())
    def exists(self, data: st.DataObject) -> None:
        text = self.pick_key(data)
        key = self.model.key(text)
        expected = ("error", kydb.InvalidKey) if key is None else ("ok", key in self.model.objects)
        self.check(expected, lambda: self.db.exists(text), "exists")

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        text = self.pick_key(data)
        key = self.model.key(text)
        if key is None or key not in self.model.objects:
            expected = ("error", kydb.InvalidKey if key is None else kydb.NotFound)
            self.check(expected, lambda: self.db.delete(text), "delete")
            return
        self.check(("ok", None), lambda: self.db.delete(text), "delete")
        del self.model.objects[key]
        self.model.orphan(key)

    # -- conditional writes

    def _conditional(self, text: str, rule: str) -> str | None:
        """The key to write conditionally, or None once an invalid key or a refusing store was checked."""
        key = self.model.key(text)

        def write() -> None:
            if rule == "set_if":
                self.db.set(text, None, if_version="1")
            else:
                self.db.delete(text, if_version="1")

        if key is None:
            self.check(("error", kydb.InvalidKey), write, rule)
            return None
        if not self.db.capabilities.conditional_writes:
            self.check(("error", kydb.ConditionalWritesNotSupported), write, rule)
            return None
        return key

    def version(self, text: str) -> str:
        found = self.db.stat(text).version
        assert isinstance(found, str), f"stat({text!r}).version is {found!r}, not a version"
        return found

    @rule(data=st.data(), value=values, stale=st.booleans())
    def set_if(self, data: st.DataObject, value: Any, stale: bool) -> None:
        """``set`` with the object's version (or ``if_absent``), or with a version that is not its own."""
        text = self.pick_key(data)
        key = self._conditional(text, "set_if")
        if key is None:
            return
        version: str | None = None  # None: if_absent
        if key in self.model.objects:
            version = self.version(text)
            if stale:
                version = data.draw(st.sampled_from([version + "-stale", None]), label="stale version")
        elif stale:
            version = "no-such-version"

        def write() -> None:
            self.db.set(text, value, if_version=version, if_absent=version is None)

        if stale:
            self.check(("error", kydb.Conflict), write, "set_if")
            return
        self.check(("ok", None), write, "set_if")
        self.model.objects[key] = value
        self.remember(key_text=text)

    @rule(data=st.data(), stale=st.booleans())
    def delete_if(self, data: st.DataObject, stale: bool) -> None:
        """``delete`` with the object's version, or with one that is not (which absent objects never have)."""
        text = self.pick_key(data)
        key = self._conditional(text, "delete_if")
        if key is None:
            return
        if key not in self.model.objects or stale:
            version = "no-such-version" if key not in self.model.objects else self.version(text) + "-stale"
            self.check(("error", kydb.Conflict), lambda: self.db.delete(text, if_version=version), "delete_if")
            return
        current = self.version(text)
        self.check(("ok", None), lambda: self.db.delete(text, if_version=current), "delete_if")
        del self.model.objects[key]
        self.model.orphan(key)

    # -- folders

    @rule(data=st.data())
    def mkdir(self, data: st.DataObject) -> None:
        self._mkdir(self.pick_folder(data))

    def _mkdir(self, text: str) -> None:
        folder = self.model.folder(text)
        if folder is None or folder == "/":
            self.check(("error", kydb.InvalidKey), lambda: self.db.mkdir(text), "mkdir")
            return
        self.check(("ok", None), lambda: self.db.mkdir(text), "mkdir")
        self.remember(folder_text=text)
        self.made_folders.append(text)
        self.model.kept.update([*self.model.ancestors(folder), folder])

    @rule(data=st.data())
    def rmdir(self, data: st.DataObject) -> None:
        self._rmdir(self.pick_folder(data, made_first=True))

    def _rmdir(self, text: str) -> None:
        folder = self.model.folder(text)
        if folder is None or folder == "/":
            self.check(("error", kydb.InvalidKey), lambda: self.db.rmdir(text), "rmdir")
            return
        if not self.model.exists(folder):
            expected: tuple[str, Any] = ("error", kydb.NotFound)
        elif self.model.children(folder):
            expected = ("error", kydb.FolderNotEmpty)
        else:
            expected = ("ok", None)
        self.check(expected, lambda: self.db.rmdir(text), "rmdir")
        if expected[0] == "ok":
            self.model.kept.discard(folder)
            self.model.orphan(folder)

    @rule(data=st.data(), fill=st.booleans(), value=values)
    def mkdir_then_rmdir(self, data: st.DataObject, fill: bool, value: Any) -> None:
        """The sequence random picks rarely hit: make a folder, maybe fill it, remove it."""
        text = self.pick_folder(data)
        self._mkdir(text)
        if fill:
            self._set(text.rstrip("/") + "/inside", value)
        self._rmdir(text)

    @rule(data=st.data())
    def rm_tree(self, data: st.DataObject) -> None:
        text = self.pick_folder(data)
        folder = self.model.folder(text)
        if folder is None:
            self.check(("error", kydb.InvalidKey), lambda: self.db.rm_tree(text), "rm_tree")
            return
        if not self.model.exists(folder):
            self.check(("error", kydb.NotFound), lambda: self.db.rm_tree(text), "rm_tree")
            return
        removed = sum(1 for k in self.model.objects if k.startswith(folder))
        self.check(("ok", removed), lambda: self.db.rm_tree(text), "rm_tree")
        self.model.remove_tree(folder)
        self.model.orphan(folder)

    @rule(data=st.data(), include_dir=st.booleans())
    def ls(self, data: st.DataObject, include_dir: bool) -> None:
        text = self.pick_folder(data)
        folder = self.model.folder(text, system=True)
        if folder is None:
            self.check(("error", kydb.InvalidKey), lambda: self.db.ls(text, include_dir), "ls")
            return
        names = self.model.children(folder)
        if not include_dir:
            names = {n for n in names if not n.endswith("/")}
        self.check(("ok", sorted(names)), lambda: self.db.ls(text, include_dir), "ls")

    @rule(data=st.data())
    def is_dir(self, data: st.DataObject) -> None:
        text = self.pick_folder(data)
        folder = self.model.folder(text, system=True)
        if folder is None:
            self.check(("error", kydb.InvalidKey), lambda: self.db.is_dir(text), "is_dir")
            return
        self.check(("ok", self.model.exists(folder)), lambda: self.db.is_dir(text), "is_dir")

    # -- the cache

    @rule(data=st.data(), everything=st.booleans())
    def refresh(self, data: st.DataObject, everything: bool) -> None:
        text = self.pick_key(data)
        if everything:
            self.db.refresh()
        elif self.model.key(text) is not None:
            self.db.refresh(text)

    @rule(data=st.data(), reads=st.integers(0, 3), value=values)
    def cache_context(self, data: st.DataObject, reads: int, value: Any) -> None:
        text = self.pick_key(data)
        with self.db.cache_context():
            for _ in range(reads):
                self._read(self.pick_key(data), reload=False)
            self._set(text, value)
            self._read(text, reload=False)
        self._read(text, reload=False)

    @invariant()
    def root_listing_matches(self) -> None:
        assert self.db.ls("/") == sorted(self.model.children("/"))


def check_against_model(
    new_db: Callable[[], kydb.BaseDB], *, max_examples: int = 100, steps: int = 30, **settings: Any
) -> Counter[str]:
    """Run the model check: each example gets a fresh, empty DB from ``new_db`` and empties it at the end.

    Returns how often each operation met each outcome (``"rmdir -> FolderNotEmpty"``),
    so a caller can show the run exercised what it meant to.  Raises an
    ``AssertionError`` describing the shortest operation sequence that made
    the DB and the model disagree.
    """
    outcomes: Counter[str] = Counter()
    machine = type("KydbModelCheck", (_Machine,), {"new_db": staticmethod(new_db), "outcomes": outcomes})
    options = {"deadline": None, "max_examples": max_examples, "stateful_step_count": steps, **settings}
    run_state_machine_as_test(machine, settings=hypothesis_settings(**options))
    return outcomes
