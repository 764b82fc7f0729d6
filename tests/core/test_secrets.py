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
    db.store.kydb_put(items={"/base/bad": b"KYDB\x01\x02\x00" + b"\x00" * 40}, mtime_ns=0, indexes={})
    record(lambda: db.read("/bad", reload=True))
    db.store.kydb_put(items={"/base/plain": envelope.encode(1)}, mtime_ns=0, indexes={})
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
