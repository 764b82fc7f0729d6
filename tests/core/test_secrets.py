"""No password or signing key in any repr, log record or error message, whatever goes wrong."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import kydb
from kydb import envelope
from kydb.testing import failing, unique_name

PASSWORD = "pw-" + "x7Q9" * 4
SIGNING_KEY = "sk-" + "Z3k8" * 6


def test_every_error_path_keeps_secrets_out(password_scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    scheme = password_scheme
    url = f"{scheme}://admin:{PASSWORD}@{unique_name('sec')}/base"
    db = kydb.connect(url, signing_key=SIGNING_KEY)
    unsigned = kydb.connect(url, require_signed=False, signing_key=[SIGNING_KEY])
    texts: list[str] = [repr(db), db.url, repr(db.store_url), repr(db._codec), str(db.store_url.masked)]

    def record(action: Callable[[], Any]) -> None:
        try:
            action()
        except Exception as exc:  # every error path, whatever its type
            texts.append("".join(traceback.format_exception(exc)))
            texts.append(repr(exc))
        else:
            raise AssertionError(f"{action} did not fail")

    db["/k"] = 1
    record(lambda: db["/missing"])
    record(lambda: db["/.hidden"])
    record(lambda: db.rmdir("/nothing"))
    db["/full/x"] = 1
    record(lambda: db.rmdir("/full"))
    record(lambda: db.new("Greeter", "/g"))
    db.store.kydb_put(items={"/base/bad": b"KYDB\x01\x02\x00" + b"\x00" * 40}, mtime_ns=0, indexes={}, expect={})
    record(lambda: db.read("/bad", reload=True))
    db.store.kydb_put(items={"/base/plain": envelope.encode(1)}, mtime_ns=0, indexes={}, expect={})
    record(lambda: db.read("/plain", reload=True))
    record(lambda: unsigned.set("/db", {"handle": db}))
    with failing(db, "kydb_get", "kydb_put"):
        record(lambda: db.read("/k", reload=True))
        record(lambda: db.set("/k", 2))
    record(lambda: kydb.connect(f"{scheme}://admin:{PASSWORD}@host:notaport/x"))
    record(lambda: kydb.connect(f"nosuchscheme://admin:{PASSWORD}@host/x"))
    record(lambda: kydb.connect(f"{url};"))
    record(lambda: kydb.connect(f"{url}?token={PASSWORD}&colour=red"))  # an option the store rejects
    record(lambda: kydb.connect(url, signing_key=SIGNING_KEY[:8]))
    texts.extend(record.getMessage() for record in caplog.records)
    texts.extend(repr(union) for union in [kydb.connect(f"{url};memory://{unique_name('m')}", signing_key=SIGNING_KEY)])

    leaks = [text for text in texts if PASSWORD in text or SIGNING_KEY in text or SIGNING_KEY[:8] in text]
    assert not leaks, leaks
    assert any("***" in text for text in texts)  # the URLs were there, masked


SECRET = "Zq9SECRET"
#: Passwords holding every character that has a meaning in a URL or in kydb's composite URLs.
SPECIAL_PASSWORDS = [f"{SECRET}/x", f"{SECRET}#x", f"{SECRET}?x", f"{SECRET};x", f"{SECRET}|x", f"ss@{SECRET}", SECRET]


@pytest.mark.parametrize("password", SPECIAL_PASSWORDS)
@pytest.mark.parametrize("scheme", ["redis", "postgresql", "mysql", "memory", "pwmem"])
def test_passwords_with_url_characters_never_show(
    scheme: str, password: str, password_scheme: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In masks, in errors (any scheme, installed or not, composite or not) and in the command line."""
    from kydb.cli import main

    url = f"{scheme}://user:{password}@127.0.0.1:1/test"
    for text in (url, f"memory://{unique_name('m')};{url}", f"{url}|memory://{unique_name('m')}"):
        assert SECRET not in kydb.url.mask_url(text), text
        texts = []
        try:
            db = kydb.connect(text)
        except Exception as exc:  # whatever the scheme makes of it, it must not show the password
            texts.append("".join(traceback.format_exception(exc)))
        else:
            texts += [repr(db), db.url]
            db.close()
        with pytest.raises(SystemExit):
            main(["-u", text, "ls"])
        captured = capsys.readouterr()
        texts += [captured.out, captured.err]
        assert not [t for t in texts if SECRET in t], texts


@pytest.mark.parametrize("char", ["/", "?", "#", "@"])
def test_unencoded_url_characters_in_a_password_are_refused_with_the_fix(char: str, password_scheme: str) -> None:
    with pytest.raises(ValueError, match="percent-encode") as info:
        kydb.connect(f"{password_scheme}://user:{SECRET}{char}x@{unique_name('h')}/base")
    assert SECRET not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("char", [";", "|"])
def test_composite_separators_in_a_password_do_not_split_the_url(char: str, password_scheme: str) -> None:
    name = unique_name("h")
    db = kydb.connect(f"{password_scheme}://user:{SECRET}{char}x@{name}/base")
    assert isinstance(db, kydb.DB) and db.store_url.password == f"{SECRET}{char}x"
    assert db.store_url.netloc == name and db.base_path == "/base"
    assert SECRET not in repr(db)
    union = kydb.connect(f"{password_scheme}://user:{SECRET}{char}x@{name}/base;memory://{unique_name('m')}")
    assert isinstance(union, kydb.UnionDB) and union.dbs[0] is db
