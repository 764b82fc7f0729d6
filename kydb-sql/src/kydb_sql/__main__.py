"""``python -m kydb_sql upgrade URL``: upgrade a table an earlier kydb-sql wrote to this version's layout.

See :func:`kydb_sql.upgrade.main`.
"""

from __future__ import annotations

import sys

from .upgrade import main

sys.exit(main())
