"""The read cache (kydb.cache) on its own."""

from __future__ import annotations

import threading

from kydb.cache import ReadCache


def test_fill_is_refused_after_a_newer_write() -> None:
    cache = ReadCache()
    token = cache.token()  # a reader starts fetching...
    cache.put("/k", "new", cache.token())  # ...a writer stores a newer value...
    cache.fill("/k", "old", token)  # ...the reader's stale value must not win
    assert cache.lookup("/k") == (True, "new")


def test_fill_is_refused_after_an_invalidation() -> None:
    cache = ReadCache()
    token = cache.token()
    cache.discard(["/k"])
    cache.fill("/k", "stale", token)
    assert cache.lookup("/k") == (False, None)


def test_a_write_loses_to_an_invalidation_that_landed_while_it_ran() -> None:
    cache = ReadCache()
    token = cache.token()  # a writer starts its store write...
    cache.discard(["/k"])  # ...a delete of the same key completes meanwhile...
    cache.put("/k", "slow", token)  # ...the slow write must not bring the value back
    assert cache.lookup("/k") == (False, None)


def test_a_write_that_raced_another_write_drops_its_entry() -> None:
    cache = ReadCache()
    first = cache.token()
    second = cache.token()
    cache.put("/k", "second", second)
    cache.put("/k", "first", first)  # which one the store kept is unknown here: ask it next time
    assert cache.lookup("/k") == (False, None)


def test_scopes_nest_and_keep_older_entries() -> None:
    cache = ReadCache()
    cache.put("/a", 1, cache.token())
    with cache.scope():
        cache.put("/b", 2, cache.token())
        cache.put("/a", 10, cache.token())  # existed before: stays, with its new value
        with cache.scope():
            cache.put("/c", 3, cache.token())
        assert cache.lookup("/c") == (False, None)
        assert cache.lookup("/b") == (True, 2)
    assert cache.lookup("/b") == (False, None)
    assert cache.lookup("/a") == (True, 10)


def test_scopes_from_two_threads_do_not_steal_each_others_entries() -> None:
    cache = ReadCache()
    inside = threading.Event()
    leave = threading.Event()

    def other() -> None:
        with cache.scope():
            cache.put("/other", 1, cache.token())
            inside.set()
            leave.wait()

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait()
    with cache.scope():
        cache.put("/mine", 2, cache.token())
    leave.set()
    thread.join()
    assert cache.lookup("/mine") == (False, None)
    assert cache.lookup("/other") == (False, None)
    assert len(cache) == 0


def test_discard_folder_drops_only_that_subtree() -> None:
    cache = ReadCache()
    for key in ("/a/x", "/a/b/y", "/ab", "/a"):
        cache.put(key, key, cache.token())
    cache.discard_folder("/a/")
    assert sorted(k for k in ("/a/x", "/a/b/y", "/ab", "/a") if cache.lookup(k)[0]) == ["/a", "/ab"]
