"""The ``kydb`` command line: browse, inspect and copy between stores.

``kydb COMMAND --help`` documents each command.  The store is ``--url``,
else ``$KYDB_URL``, else the embedded default (:func:`kydb.default_url`).
Errors are one line on stderr naming the (masked) URL and what to do; no
traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pprint
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO

from . import envelope, registry, transfer
from .connect import connect
from .db import DB
from .dbobj import DbObj
from .errors import InvalidKey, KydbError, NotFound, StoreUnavailable, UnknownScheme
from .front import BaseDB
from .keys import folder_of, normalize_folder, normalize_key

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_READER_GONE = 0, 1, 2, 130, 141

DESCRIPTION = """\
Browse, inspect and copy kydb stores.

The store is --url/-u, else $KYDB_URL, else the embedded SQLite store
(with kydb-sql installed).  A URL names a store and its base path exactly as
kydb.connect reads it, e.g. 'sqlite:///local.db?base=/books' or
'redis://cache|s3://prod'.
"""

EPILOG = """\
exit status:
  0    success
  1    an error (missing key, unreachable store, unknown scheme...); one line on stderr
  2    wrong usage of the command line
  130  interrupted (Ctrl-C); a copy stops cleanly after the batch in flight
  141  the reader of the output went away (kydb ls | head): kydb stops quietly,
       with the status of a Unix tool stopped by SIGPIPE

Names holding control characters or lone surrogates (which kydb keys cannot
hold, but other tools may write) are printed with them escaped, ESC as \\x1b,
whether the output is a terminal or not.

Run 'kydb COMMAND --help' for a command's options.
"""


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class _ReaderGone(Exception):
    """Whoever read the output has gone away (a closed pipe)."""


# ---------------------------------------------------------------------- output


def _human_bytes(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


# What a kydb key cannot hold: C0 and C1 control characters, DEL, lone surrogates.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped (ESC as ``\\x1b``), for display."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _write(text: str = "", stream: TextIO | None = None) -> None:
    try:
        print(text, file=stream or sys.stdout)
    except BrokenPipeError:
        raise _ReaderGone from None


def _write_bytes(data: bytes) -> None:
    out = sys.stdout.buffer
    view = memoryview(data)
    try:
        while view:
            written = out.write(view)  # a pipe whose reader leaves takes part of it
            if not written:
                raise BrokenPipeError
            view = view[written:]
        out.flush()
    except BrokenPipeError:
        raise _ReaderGone from None


# ---------------------------------------------------------------------- stores and paths


def _store(args: argparse.Namespace) -> BaseDB:
    return connect(args.url or registry.default_url())


def _split_object_url(url: str) -> tuple[BaseDB, str]:
    """``store-url/with/base/name`` -> (the store rooted at the parent, ``/name``)."""
    db = connect(url)
    if not isinstance(db, DB) or not db.base_path:
        raise CommandError(
            f"{db.url} names a store, not an object; add the object's path to the URL "
            "(e.g. memory://x/folder/key, or ?base=/folder/key) or use -r for a folder"
        )
    parent, _, name = db.base_path.rpartition("/")
    return connect(db.store_url.with_base(parent or "/")), "/" + name


def _endpoint(args: argparse.Namespace, text: str, *, folder: bool) -> tuple[BaseDB, str]:
    """An argument that is a URL (``scheme://...``) or a path in the --url store."""
    if "://" in text:
        return (connect(text), "/") if folder else _split_object_url(text)
    return _store(args), text


def _object_at(db: BaseDB, path: str) -> str | None:
    """The key ``path`` names if an object is there (a path ending with ``/`` names a folder)."""
    if path.endswith("/"):
        return None
    key = normalize_key(path, system=True)
    return key if db.exists(key, system_obj=True) else None


_FOLDER_HINTS = {
    "cat": "kydb ls {path} lists it",
    "stat": "kydb ls -l {path} lists it",
    "rm": "kydb rm -r {path} removes it and everything below it",
    "cp": "kydb cp -r copies it and everything below it",
}


def _missing(db: BaseDB, path: str, what: str) -> NotFound:
    """``/a/b: no such WHAT in URL (kydb ls /a/ shows what is there)``."""
    parent = folder_of(path)
    return NotFound(f"{path}: no such {what} in {db.url} (kydb ls {parent} shows what is there)")


def _no_object(db: BaseDB, key: str, command: str) -> Exception:
    """The error for a path that holds no object: a folder (say so, and what to run instead), or nothing."""
    if db.is_dir(key):
        hint = _FOLDER_HINTS[command].format(path=key)
        return CommandError(f"{key}: is a folder in {db.url}, not an object; {hint}")
    return _missing(db, key, "key")


def _no_folder(db: BaseDB, path: str, folder: str, command: str) -> Exception:
    """The error for a path that holds no folder: an object (say so), or nothing."""
    if command in ("cp", "sync") and _object_at(db, path) is not None:
        use = "kydb cp without -r copies it" if command == "cp" else "kydb cp copies one object"
        return CommandError(f"{path}: is an object, not a folder, in {db.url}; {use}")
    return _missing(db, folder, "folder")


# ---------------------------------------------------------------------- commands


def cmd_ls(args: argparse.Namespace) -> None:
    db = _store(args)
    folder = normalize_folder(args.path)
    if args.t:
        # Objects newest first (by the store's index, or a scan), then the subfolders, which have no time.
        names = [n for n in db.folder(folder, allow_scan=True).by("mtime").desc() if args.all or n[:1] != "."]
        names += [n for n in db.ls(folder, system=args.all) if n.endswith("/")]
    else:
        names = db.ls(folder, system=args.all)
    if not names and folder != "/" and not db.is_dir(folder):  # nothing listed: an object, or nothing at all
        key = _object_at(db, args.path)
        if key is None:
            raise _missing(db, folder, "folder" if args.path.endswith("/") else "folder or object")
        folder, names = folder_of(key), [key.rpartition("/")[2]]  # an object lists as itself, as ls FILE does
    if not args.long:
        for name in names:
            _write(_printable(name))
        return
    objects = [folder + n for n in names if not n.endswith("/") and _is_key(folder + n)]
    infos: dict[str, Any] = {}
    for start in range(0, len(objects), 500):
        infos.update(db.stat_many(objects[start : start + 500], system_obj=True))
    for name in names:
        info = infos.get(folder + name)
        size = "-" if info is None else str(info.size)
        when = "-" if info is None else _when(info.mtime_ns)
        _write(f"{size:>12}  {when:<19}  {_printable(name)}")


def _is_key(path: str) -> bool:
    """Whether kydb can name ``path`` (another tool may have written names it refuses: those show no details)."""
    try:
        normalize_key(path, system=True)
    except InvalidKey:
        return False
    return True


def _tree_lines(db: BaseDB, folder: str, depth: int | None, system: bool, prefix: str = "") -> Iterator[str]:
    names = db.ls(folder, system=system)
    for i, name in enumerate(names):
        last = i == len(names) - 1
        line = prefix + ("└── " if last else "├── ") + _printable(name)
        if not name.endswith("/") or (depth is not None and depth <= 1):
            yield line
        elif _UNPRINTABLE.search(name):  # another tool's name: kydb cannot address what is below it
            yield line + "  (not listed: the name holds control characters)"
        else:
            yield line
            yield from _tree_lines(
                db, folder + name, None if depth is None else depth - 1, system, prefix + ("    " if last else "│   ")
            )


def cmd_tree(args: argparse.Namespace) -> None:
    db = _store(args)
    folder = normalize_folder(args.path)
    if folder != "/" and not db.is_dir(folder):
        key = _object_at(db, args.path)
        if key is None:
            raise _no_folder(db, args.path, folder, "tree")
        _write(key)  # an object is a tree of one, as in ls
        return
    _write(folder)
    for line in _tree_lines(db, folder, args.depth, args.all):
        _write(line)


def cmd_cat(args: argparse.Namespace) -> None:
    db = _store(args)
    if args.raw:
        key = normalize_key(args.key, system=True)
        blob = db.get_blobs([key], system_obj=True).get(key)
        if blob is None:
            raise _no_object(db, key, "cat")
        _write_bytes(blob)
        return
    try:
        value = db.read(args.key, reload=True, system_obj=True)
    except NotFound:
        raise _no_object(db, normalize_key(args.key, system=True), "cat") from None
    if isinstance(value, DbObj):
        header = _printable(f"<{value.class_name} {value.key}> ")
        _write(header + pprint.pformat(value.get_stored_dict(), sort_dicts=True))
    else:
        _write(pprint.pformat(value, sort_dicts=True))


def cmd_put(args: argparse.Namespace) -> None:
    db = _store(args)
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115 - closed below
    try:
        data = source.read()
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if args.bytes:
        value: Any = data
    else:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise CommandError(f"{args.file}: not valid JSON ({exc}); use --bytes to store the raw bytes") from None
    del data  # the file's bytes are not needed once decoded: a big file is not held twice while stored
    db.set(args.key, value)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    answer = input(f"{question} [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def cmd_rm(args: argparse.Namespace) -> None:
    db = _store(args)
    failures = 0
    for path in args.paths:
        try:
            if args.recursive:
                folder = normalize_folder(path, system=True)
                if folder == "/" and not args.yes_really:
                    raise CommandError(f"refusing to empty the whole store {db.url}; add --yes-really to do it")
                if folder != "/" and not db.is_dir(folder):
                    key = _object_at(db, path)
                    if key is None:
                        raise _missing(db, folder, "folder or object")
                    db.delete(key, system_obj=True)  # rm -r removes an object, as it does a file
                    continue
                if (
                    not args.force
                    and not args.yes_really
                    and not _confirm(f"remove {folder} and everything below it in {db.url}?")
                ):
                    raise CommandError(f"{folder}: not removed (confirm on a terminal, or pass -f)")
                db.rm_tree(folder, system_obj=True)
            else:
                try:
                    db.delete(path, system_obj=True)
                except NotFound:
                    raise _no_object(db, normalize_key(path, system=True), "rm") from None
        except (KydbError, KeyError, ValueError, CommandError) as exc:
            _report(exc)
            failures += 1
    if failures:
        raise SystemExit(EXIT_ERROR)


def cmd_mkdir(args: argparse.Namespace) -> None:
    db = _store(args)
    for folder in args.folders:
        db.mkdir(folder)


def cmd_rmdir(args: argparse.Namespace) -> None:
    db = _store(args)
    for folder in args.folders:
        db.rmdir(folder)


def cmd_stat(args: argparse.Namespace) -> None:
    db = _store(args)
    key = normalize_key(args.key, system=True)
    try:
        info = db.stat(key, system_obj=True)
    except NotFound:
        raise _no_object(db, key, "stat") from None
    blob = db.get_blobs([key], system_obj=True).get(key, b"")
    _write(f"key:       {key}")
    _write(f"store:     {db.url}")
    _write(f"size:      {info.size} bytes ({_human_bytes(info.size)})")
    _write(f"modified:  {_when(info.mtime_ns)}")
    _write(f"created:   {_when(info.ctime_ns)}")
    _write(f"format:    {envelope.describe(blob)}")


def cmd_backends(args: argparse.Namespace) -> None:
    installed = registry.backends()
    missing = sorted(set(registry.WELL_KNOWN_SCHEMES) - {info.scheme for info in installed})
    width = max([12, *(len(info.scheme) + 1 for info in installed), *(len(scheme) + 1 for scheme in missing)])
    _write(f"{'scheme':<{width}} {'distribution':<22} {'version':<10} class")
    for info in installed:
        _write(f"{info.scheme:<{width}} {info.distribution:<22} {info.version:<10} {info.target}")
    if missing:
        _write("\nnot installed:")
        for scheme in missing:
            _write(f"{scheme:<{width}} {registry.install_command(scheme)}")


class _Progress:
    """A one-line progress display on a terminal: objects, bytes, rate, ETA."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, stats: transfer.TransferStats) -> None:
        if not self.enabled:
            return
        rate = stats.visited / stats.elapsed if stats.elapsed > 0 else 0.0
        total = f"/{stats.total:,}" if stats.total is not None else ""
        eta = ""
        if stats.total is not None and rate > 0:
            left = max(stats.total - stats.visited, 0) / rate
            eta = f", ETA {int(left // 60)}:{int(left % 60):02d}"
        try:
            sys.stderr.write(
                f"\r{stats.visited:,}{total} objects, {_human_bytes(stats.bytes)}, {rate:,.0f} obj/s{eta}   "
            )
            sys.stderr.flush()
        except BrokenPipeError:
            raise _ReaderGone from None

    def done(self) -> None:
        if self.enabled:
            _write("", sys.stderr)


def _summary(verb: str, stats: transfer.TransferStats, src: BaseDB, src_path: str, dst: BaseDB, dst_path: str) -> str:
    """``copied 3 objects (1.2 kB) from /data/ of URL to /data/ of URL in 0.8 s`` (URLs masked)."""
    return (
        f"{verb} {_count(stats.objects, 'object')} ({_human_bytes(stats.bytes)}) "
        f"from {src_path} of {src.url} to {dst_path} of {dst.url} in {stats.elapsed:.1f} s"
    )


def _copy(args: argparse.Namespace, sync: bool) -> None:
    recursive = sync or args.recursive
    src, src_path = _endpoint(args, args.src, folder=recursive)
    dst, dst_path = _endpoint(args, args.dst, folder=recursive)
    if not recursive:
        if dst.is_dir(dst_path):
            dst_path = dst_path.rstrip("/") + "/" + src_path.rstrip("/").rpartition("/")[2]
        src_key, dst_key = normalize_key(src_path, system=True), normalize_key(dst_path, system=True)
        copied = transfer.copy_objects(src, dst, {src_key: dst_key})
        if not copied.objects:
            raise _no_object(src, src_key, "cp")
        if not args.quiet:
            _write(_summary("copied", copied, src, src_key, dst, dst_key), sys.stderr)
        return
    src_folder, dst_folder = normalize_folder(src_path), normalize_folder(dst_path)
    if src_folder != "/" and not src.is_dir(src_folder):
        raise _no_folder(src, src_path, src_folder, "sync" if sync else "cp")
    delete = sync and args.delete
    transfer.check_destination(src, src_folder, dst, dst_folder, delete=delete)  # before counting or asking
    if delete:
        _confirm_deletion(args, src, src_folder, dst, dst_folder)
    progress = _Progress(enabled=not args.quiet and sys.stderr.isatty())
    stats = transfer.TransferStats(total=transfer.count_objects(src, src_folder) if progress.enabled else None)
    stop = threading.Event()

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()  # finish the batch in flight, then stop; a second Ctrl-C aborts at once

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        transfer.copy_tree(
            src, src_folder, dst, dst_folder, sync=sync, delete=delete, progress=progress, stop=stop, stats=stats
        )
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.done()
    summary = (
        _summary("synced" if sync else "copied", stats, src, src_folder, dst, dst_folder)
        + f"; {stats.skipped:,} already identical, {_count(stats.folders, 'empty folder')}"
        + (f", {stats.deleted:,} deleted" if delete else "")
    )
    if stats.interrupted:
        _write(f"interrupted: {summary}; run 'kydb sync' with the same arguments to finish", sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    if not args.quiet:
        _write(summary, sys.stderr)


def _whole_store(db: BaseDB, folder: str) -> bool:
    """Whether ``folder`` of ``db`` is the root of a whole store (no base path narrows it)."""
    return folder == "/" and not (isinstance(db, DB) and db.base_path)


def _confirm_deletion(args: argparse.Namespace, src: BaseDB, src_folder: str, dst: BaseDB, dst_folder: str) -> None:
    """``sync --delete`` asks as ``rm -r`` does: on a terminal, else -f; a whole store also needs --yes-really."""
    if _whole_store(dst, dst_folder) and not args.yes_really:
        raise CommandError(
            f"refusing to delete from the whole store {dst.url} what {src_folder} of {src.url} lacks; "
            "add --yes-really to do it"
        )
    question = f"delete from {dst_folder} of {dst.url} everything {src_folder} of {src.url} does not hold?"
    if not args.force and not args.yes_really and not _confirm(question):
        raise CommandError(f"{dst_folder} of {dst.url}: nothing synced (confirm --delete on a terminal, or pass -f)")


def cmd_cp(args: argparse.Namespace) -> None:
    _copy(args, sync=False)


def cmd_sync(args: argparse.Namespace) -> None:
    _copy(args, sync=True)


def cmd_demo(args: argparse.Namespace) -> None:
    from .walkthrough import main as walkthrough  # noqa: PLC0415 - only the demo needs it

    try:
        walkthrough(args.url or registry.default_url())
    except BrokenPipeError:  # its steps print as they go
        raise _ReaderGone from None


# ---------------------------------------------------------------------- parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kydb", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-u", "--url", help="the store (default: $KYDB_URL, else the embedded SQLite store)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=description or help_text)

    p = command(
        "ls",
        "list a folder's children (folders end with '/')",
        "List a folder's children (folders end with '/').  A missing folder is an error; an object's path "
        "lists that object, as ls does with a file.  Control characters in names are escaped (ESC as \\x1b).",
    )
    p.add_argument("path", nargs="?", default="/", help="the folder (default: /); an object's path lists that object")
    p.add_argument("-l", "--long", action="store_true", help="long form: size in bytes and modification time")
    p.add_argument("-t", action="store_true", help="sort by modification time, newest first")
    p.add_argument("-a", "--all", action="store_true", help="also list system names (.configs/...)")
    p.set_defaults(run=cmd_ls)

    p = command(
        "tree",
        "show a folder's tree",
        "Show a folder's tree.  A missing folder is an error; an object's path shows that object.  "
        "Control characters in names are escaped (ESC as \\x1b); a folder whose name holds them is shown "
        "but not entered.",
    )
    p.add_argument("path", nargs="?", default="/", help="the folder (default: /)")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="descend at most N levels")
    p.add_argument("-a", "--all", action="store_true", help="also show system names (starting with '.')")
    p.set_defaults(run=cmd_tree)

    p = command("cat", "print a value (pretty-printed repr)")
    p.add_argument("key")
    p.add_argument("--raw", action="store_true", help="write the stored blob's bytes instead")
    p.set_defaults(run=cmd_cat)

    p = command("put", "store a JSON value (or raw bytes) read from a file or stdin")
    p.add_argument("key")
    p.add_argument("file", nargs="?", default="-", help="the file to read, or - for stdin (default)")
    p.add_argument("--bytes", action="store_true", help="store the input's bytes as a bytes value, not JSON")
    p.set_defaults(run=cmd_put)

    p = command(
        "rm",
        "delete objects, or folders with -r",
        "Delete objects, or folders and everything below them with -r (which removes an object too, as rm -r "
        "does a file).  A folder given without -r is an error that says so.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("-r", "--recursive", action="store_true", help="remove folders and everything below them")
    p.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")
    p.add_argument("--yes-really", action="store_true", help="needed to remove the root folder '/' with -r")
    p.set_defaults(run=cmd_rm)

    p = command("mkdir", "create folders (and their parents)")
    p.add_argument("folders", nargs="+", metavar="FOLDER")
    p.set_defaults(run=cmd_mkdir)

    p = command("rmdir", "remove empty folders")
    p.add_argument("folders", nargs="+", metavar="FOLDER")
    p.set_defaults(run=cmd_rmdir)

    p = command("stat", "show an object's size, times and stored format")
    p.add_argument("key")
    p.set_defaults(run=cmd_stat)

    p = command("backends", "list installed backends, and how to install the others")
    p.set_defaults(run=cmd_backends)

    copy_help = (
        "SRC and DST are each a URL (scheme://..., naming a store and its base path as kydb.connect "
        "reads it) or a path in the --url store.  A destination folder inside the source folder (or equal "
        "to it) in the same store is refused before anything is copied.  The summary on stderr reads "
        "'copied (or synced) N objects (SIZE) from FOLDER of URL to FOLDER of URL in T s'."
    )
    for name, run, help_text in (
        ("cp", cmd_cp, "copy an object, or a folder's tree with -r, between stores"),
        ("sync", cmd_sync, "copy a folder's tree, skipping objects already identical (resumes a copy)"),
    ):
        p = command(name, help_text, f"{help_text}. {copy_help}")
        p.add_argument("src", metavar="SRC")
        p.add_argument("dst", metavar="DST")
        if name == "cp":
            p.add_argument("-r", "--recursive", action="store_true", help="copy a folder and everything below it")
        else:
            p.add_argument(
                "--delete",
                action="store_true",
                help="then delete what DST holds and SRC does not (objects and whole folders), as rsync --delete "
                "does; asks first on a terminal, else needs -f; nothing is deleted if the copy fails or stops",
            )
            p.add_argument("-f", "--force", action="store_true", help="with --delete: do not ask for confirmation")
            p.add_argument(
                "--yes-really",
                action="store_true",
                help="with --delete: needed when DST is the root of a whole store (a URL without a base path)",
            )
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
        p.set_defaults(run=run)

    p = command(
        "demo",
        "run the kydb walkthrough in a new folder of the store, removed at the end",
        "Run the kydb walkthrough on the store (default: the embedded store), in a new folder "
        "/kydb-demo-XXXXXXXX (random hex) that it creates and removes at the end; nothing else "
        "in the store is changed or removed.  With a composite URL the folder is made in each layer.",
    )
    p.set_defaults(run=cmd_demo)
    return parser


_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (UnknownScheme, ""),
    (StoreUnavailable, " (--debug shows the cause)"),  # the backend's message says what to check
    (NotFound, " (kydb ls shows what is there)"),
    (InvalidKey, ""),
)


def _report(exc: BaseException) -> None:
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    hint = "" if "shows what is there" in message else next((h for cls, h in _HINTS if isinstance(exc, cls)), "")
    _write(_printable(f"kydb: error: {message}{hint}"), sys.stderr)


def _run(args: argparse.Namespace) -> int:
    try:
        args.run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR if exc.code else EXIT_OK
    except KeyboardInterrupt:
        _write("kydb: interrupted", sys.stderr)
        return EXIT_INTERRUPTED
    except (KydbError, KeyError, ValueError, OSError, ImportError, CommandError) as exc:
        if args.debug:
            raise
        _report(exc)
        return EXIT_ERROR
    try:
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is noticed
    except BrokenPipeError:
        raise _ReaderGone from None
    return EXIT_OK


def _leave_quietly() -> NoReturn:
    """The reader went away: send what is still buffered nowhere (no error at exit) and stop."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a file descriptor (captured output)
            pass
    raise SystemExit(EXIT_READER_GONE)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line; exits with the status documented in ``kydb --help``."""
    args = build_parser().parse_args(argv)
    try:
        status = _run(args)
    except _ReaderGone:
        _leave_quietly()
    raise SystemExit(status)
