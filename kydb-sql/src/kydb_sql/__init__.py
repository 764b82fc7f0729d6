"""kydb's SQL backend: any SQLAlchemy database is a kydb store.

::

    import kydb
    db = kydb.connect('sqlite:///kydb.db')                              # one file, zero setup
    db = kydb.connect('postgresql://user@db-host/dbname?base=/team')    # pip install 'kydb-sql[postgresql]'
    db = kydb.connect('mysql://user@db-host/dbname?table=kydb_prod')    # pip install 'kydb-sql[mysql]'

Schemes ``sqlite``, ``postgresql``, ``mysql`` and ``mariadb`` (with or
without a ``+driver``).  The table layout is described in
:mod:`kydb_sql.layout`, the cost of each operation (and conditional writes)
in :mod:`kydb_sql.store`, engines and their shared pools in
:mod:`kydb_sql.engines`.  ``python -m kydb_sql upgrade URL``
(:func:`upgrade_table`) upgrades a table an earlier kydb-sql wrote.
"""

from __future__ import annotations

from .errors import TableLayoutError, ValueTooLarge, WriteConflict
from .store import SQLStore
from .upgrade import upgrade_table

__all__ = ["SQLStore", "TableLayoutError", "ValueTooLarge", "WriteConflict", "upgrade_table"]
__version__ = "0.1.0"
