"""The project's SQLite stores (MLflow's ``mlflow.db``, Optuna's ``optuna.db``) in write-ahead-log mode."""
from __future__ import annotations

import urllib.parse
import weakref
from pathlib import Path
from typing import Optional

_engines: "weakref.WeakSet" = weakref.WeakSet()
# what SQLAlchemy's URL parser reads otherwise in the path of a sqlite:/// URL: an escape (it decodes %xx), the
# start of a query and of a fragment; '%' first, so that the escapes written for the others stay as they are
_URL_SPECIAL = (("%", "%25"), ("?", "%3F"), ("#", "%23"))


def sqlite_uri(path) -> str:
    """``sqlite:///<path>``, read by SQLAlchemy (MLflow's and Optuna's stores) as the file ``path`` as written:
    ``paths.mlruns_dir='odd/q?x'`` made the database file ``odd/q`` (the rest read as a query), and ``pc%20t`` a
    folder ``pc t`` that did not exist. Other paths come out as they are."""
    text = str(path)
    for char, escaped in _URL_SPECIAL:
        text = text.replace(char, escaped)
    return f"sqlite:///{text}"


def sqlite_path(url: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URL, as SQLAlchemy reads it (relative paths are relative to the
    working directory); None for other URLs."""
    if not url.startswith("sqlite:///"):
        return None
    return Path(urllib.parse.unquote(url[len("sqlite:///"):].split("?", 1)[0]))


def _write_ahead_log(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def use_write_ahead_log(engine) -> None:
    """Every connection of ``engine`` (a SQLAlchemy engine on a SQLite file) in WAL mode: readers (the MLflow UI,
    a second worker) do not block the writer, and a commit appends to the log instead of two full fsyncs of the
    database (~2x faster writes: an MLflow run's creation 13 -> 7 ms, a tag 5.6 -> 2.2 ms on this project's
    machine). A crash of the process loses nothing committed; a power cut may lose the last commits, never the
    file's consistency. Idempotent; other databases are left alone."""
    from sqlalchemy import event

    if engine.dialect.name != "sqlite" or event.contains(engine, "connect", _write_ahead_log):
        return
    event.listen(engine, "connect", _write_ahead_log)
    engine.dispose()  # connections opened before the listener existed
    _engines.add(engine)


def close_write_ahead_logs() -> None:
    """Close the pooled connections of every engine put in WAL mode, before a process ends with ``os._exit``: the
    last connection to close folds the log into the database file and removes ``<db>-wal`` and ``<db>-shm``, so
    that the ``.db`` file alone holds everything (the log would otherwise stay beside it until the next use)."""
    for engine in list(_engines):
        try:
            engine.dispose()
        except Exception:  # the process is ending; what is committed is in the log either way
            pass
