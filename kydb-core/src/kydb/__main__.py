"""``python -m kydb``: the kydb command line."""

from kydb.cli import main

main()
