"""Saved findings: a title, a note and the dashboard state (including any intervention spec) under a short id.

Findings live in their own small SQLite database, the only thing the backend writes (the analysis store stays
read-only). Writes are durable (WAL journal, synchronous=FULL) and survive restarts; text is stored exactly as
given, and whoever renders it must escape it.
"""
from __future__ import annotations

import base64
import json
import secrets
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neuron_atlas.engine.versions import ENGINE_VERSION

SCHEMA = """
CREATE TABLE IF NOT EXISTS findings (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    title TEXT NOT NULL,
    note TEXT NOT NULL,
    state TEXT NOT NULL,
    spec TEXT,
    run_id TEXT,
    model TEXT,
    engine_version TEXT NOT NULL,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS findings_created ON findings (created_at DESC, id);
"""
#: Columns added after the first release, with their SQL types: an older findings file gains them when opened.
ADDED_COLUMNS = {"updated_at": "TEXT"}

#: Length of a finding id: 8 characters of lowercase base32 (40 random bits).
ID_LENGTH = 8
ID_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class FindingNotFound(LookupError):
    """No finding has the requested id."""


def new_id() -> str:
    """A random short id (lowercase base32, no padding)."""
    return base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()


def valid_id(finding_id: str) -> bool:
    return len(finding_id) == ID_LENGTH and set(finding_id) <= ID_ALPHABET


class FindingsStore:
    """Create, read, list, edit and delete findings in a SQLite file (one connection, serialised by a lock)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._con.row_factory = sqlite3.Row
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.executescript(SCHEMA)
        present = {row["name"] for row in self._con.execute("PRAGMA table_info(findings)")}
        for column, sql_type in ADDED_COLUMNS.items():
            if column not in present:
                self._con.execute(f"ALTER TABLE findings ADD COLUMN {column} {sql_type}")

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def create(self, title: str, note: str, state: dict[str, Any], spec: dict[str, Any] | None = None,
               run_id: str | None = None, model: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a finding and return it with its new id."""
        created = _now()
        state_json = json.dumps(state, ensure_ascii=False, allow_nan=False)
        spec_json = None if spec is None else json.dumps(spec, ensure_ascii=False, allow_nan=False, sort_keys=True)
        model_json = None if model is None else json.dumps(model, ensure_ascii=False)
        with self._lock:
            for _ in range(8):
                fid = new_id()
                try:
                    self._con.execute(
                        "INSERT INTO findings (id, created_at, title, note, state, spec, run_id, model, engine_version) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (fid, created, title, note, state_json, spec_json, run_id, model_json, ENGINE_VERSION),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue
            else:
                raise RuntimeError("could not allocate a unique finding id")
        return self.get(fid)

    def get(self, finding_id: str) -> dict[str, Any]:
        with self._lock:
            row = self._con.execute("SELECT * FROM findings WHERE id = ?", (finding_id,)).fetchone()
        if row is None:
            raise FindingNotFound(f"unknown finding {finding_id!r}")
        return _record(row)

    def update(self, finding_id: str, title: str | None = None, note: str | None = None) -> dict[str, Any]:
        """Change a finding's title and/or note (what it froze stays as saved); returns the updated finding."""
        changes = {k: v for k, v in (("title", title), ("note", note)) if v is not None}
        with self._lock:
            done = self._con.execute(
                f"UPDATE findings SET {', '.join(f'{k} = ?' for k in changes)}, updated_at = ? WHERE id = ?",
                (*changes.values(), _now(), finding_id),
            )
        if done.rowcount == 0:
            raise FindingNotFound(f"unknown finding {finding_id!r}")
        return self.get(finding_id)

    def delete(self, finding_id: str) -> None:
        """Remove a finding for good (its permalink then answers 404)."""
        with self._lock:
            done = self._con.execute("DELETE FROM findings WHERE id = ?", (finding_id,))
        if done.rowcount == 0:
            raise FindingNotFound(f"unknown finding {finding_id!r}")

    def list(self, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Newest first; returns (page, total)."""
        with self._lock:
            rows = self._con.execute(
                "SELECT * FROM findings ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (int(limit), int(offset))
            ).fetchall()
            total = self._con.execute("SELECT count(*) FROM findings").fetchone()[0]
        return [_record(r) for r in rows], int(total)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _record(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "title": row["title"],
        "note": row["note"],
        "state": json.loads(row["state"]),
        "spec": None if row["spec"] is None else json.loads(row["spec"]),
        "run_id": row["run_id"],
        "model": None if row["model"] is None else json.loads(row["model"]),
        "engine_version": row["engine_version"],
        "updated_at": row["updated_at"],
    }
