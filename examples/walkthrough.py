"""The kydb walkthrough, step by step, printing what each step returns.

    python examples/walkthrough.py [URL]        # default: sqlite:///kydb-demo.db

Runs on any store, in a new folder of its own (``/kydb-demo-XXXXXXXX``) that
it removes at the end; nothing else in the store is changed or removed.  The
default is a SQLite file in the current directory, kept between runs
(pip install kydb-sql).  The steps live in
``kydb.walkthrough`` (so ``kydb demo`` runs the same ones); read that module
alongside the README's tour.
"""

import sys

from kydb.walkthrough import main

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "sqlite:///kydb-demo.db")
