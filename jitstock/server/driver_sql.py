"""Core statements of the hot path run as the driver's own SQL text.

A Core statement executed through SQLAlchemy costs tens of microseconds of Python
per call even when its compiled form is cached (cache key, parameter processing,
result metadata); a crossing's flush runs about ten of them.  :class:`Prepared`
compiles a statement once per dialect and per length of each of its ``IN`` lists
into the driver's parameter style (qmark for sqlite3, pyformat for psycopg) and
runs it with :meth:`Connection.exec_driver_sql`, which keeps SQLAlchemy's
transaction, events and error wrapping (an ``IntegrityError`` is still
SQLAlchemy's).  The statement text is SQLAlchemy's own compilation, so the SQL is
the same as the Core statement's; the driver caches its prepared form by text.

Only statements whose parameters and result columns need no type processing go
this way (no JSON, no dates): results are the driver's values (a SQLite boolean
is 0 or 1).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql.expression import Executable

# Forms kept per statement: one per IN-list length seen, and a flush of thousands of
# bins would otherwise keep thousands of ever longer texts (the driver keeps 128).
MAX_FORMS = 128
# (dialect name, paramstyle, lengths of the IN lists, parameter names) -> its form
_Key = tuple[str, str, tuple[int, ...], tuple[str, ...]]
# how each positional parameter is found: ("p", name) a parameter, ("x", name, i)
# the i-th element of an IN list, ("c", value) a constant of the statement
_Recipe = tuple[tuple[Any, ...], ...]


class Prepared:
    """One Core statement as driver SQL text (compiled lazily per dialect and list lengths)."""

    def __init__(self, stmt: Executable, expanding: Sequence[str] = ()) -> None:
        self.stmt = stmt
        self.expanding = tuple(expanding)
        self._forms: dict[_Key, tuple[str, _Recipe | None, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def _form(
        self, conn: Connection, lengths: tuple[int, ...], names: Sequence[str]
    ) -> tuple[str, _Recipe | None, dict[str, Any]]:
        dialect = conn.dialect
        key = (dialect.name, str(dialect.paramstyle), lengths, tuple(names))
        form = self._forms.get(key)
        if form is not None:
            return form
        compiled = self.stmt.compile(dialect=dialect)  # type: ignore[attr-defined]
        # placeholders for the lists: the names SQLAlchemy expands them to
        sample: dict[str, Any] = {
            name: [f"\0{name}\0{i}" for i in range(n)]
            for name, n in zip(self.expanding, lengths, strict=True)
        }
        # the caller's parameters; the statement's own constants keep their values
        for name in names:
            if name not in sample:
                sample[name] = f"\0{name}"
        state = compiled.construct_expanded_state(sample)
        constants = {
            k: v
            for k, v in state.parameters.items()
            if not (isinstance(v, str) and v.startswith("\0"))
        }
        recipe: _Recipe | None = None
        if state.positiontup is not None:
            recipe = tuple(_step(state.parameters[name]) for name in state.positiontup)
        form = (state.statement, recipe, constants)
        with self._lock:
            if len(self._forms) >= MAX_FORMS:
                self._forms.clear()
            self._forms[key] = form
        return form

    def _params(
        self, conn: Connection, params: Mapping[str, Any]
    ) -> tuple[str, tuple[Any, ...] | dict[str, Any]]:
        lengths = tuple(len(params[name]) for name in self.expanding)
        text, recipe, constants = self._form(conn, lengths, list(params))
        if recipe is not None:
            return text, tuple(_value(step, params) for step in recipe)
        named = dict(constants)
        for name, value in params.items():
            if name in self.expanding:
                for i, v in enumerate(value):
                    named[f"{name}_{i + 1}"] = v
            else:
                named[name] = value
        return text, named

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run it once with these parameters (an IN list's name maps to its values)."""
        text, values = self._params(conn, params)
        return conn.exec_driver_sql(text, values)

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> Any:
        """Run it once per row (no IN lists), in one executemany."""
        assert not self.expanding, "executemany with IN lists"
        text, _ = self._params(conn, rows[0])
        return conn.exec_driver_sql(
            text,
            [self._params(conn, r)[1] for r in rows],
        )


def _step(sample: Any) -> tuple[Any, ...]:
    if isinstance(sample, str) and sample.startswith("\0"):
        parts = sample[1:].split("\0")
        if len(parts) == 2:
            return ("x", parts[0], int(parts[1]))
        return ("p", parts[0])
    return ("c", sample)


def _value(step: tuple[Any, ...], params: Mapping[str, Any]) -> Any:
    kind = step[0]
    if kind == "p":
        return params[step[1]]
    if kind == "x":
        return params[step[1]][step[2]]
    return step[1]
