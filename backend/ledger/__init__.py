"""The SQLite ledger every engine keeps its runs' history in (backend/ledger/db.py)."""
