"""Makes every sqlite transaction `BEGIN IMMEDIATE` (test harness only).

Cinder runs three processes (API, scheduler, volume) on one database. oslo.db
starts each sqlite transaction with a plain (deferred) BEGIN, so a
transaction that reads and then writes while another process writes fails at
once with "database is locked": sqlite cannot wait its way out of that lock
upgrade, whatever the busy timeout. Taking the write lock at BEGIN turns the
contention into a short wait (the URL's `timeout=60`), which is all a test
cloud needs. Production Cinder uses MySQL or PostgreSQL and never sees this.

The listener is registered on the Engine class, so it runs before oslo.db's
per-engine one, which sees the transaction already begun and stays quiet.
"""

from sqlalchemy import event, text
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "begin")
def _begin_immediate(conn):
    if conn.dialect.name == "sqlite" and "in_transaction" not in conn.info:
        conn.execute(text("BEGIN IMMEDIATE"))
        conn.info["in_transaction"] = True
