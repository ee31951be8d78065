"""Hot reads compiled once: a queryset's SQL made once per database connection, then run with new values.

Django compiles a queryset to SQL on every evaluation. For the work protocol's reads (a job locked
with the relations its result needs, a claimed job with its payload's: up to ~90 columns over six
tables) the compilation cost more CPU than the rest of the request. A ``PreparedQuery`` is a
function of some values that builds a queryset; the first call on a connection (one per thread)
builds it twice with two sets of marker values, compiles both, and finds where each marker went
in the SQL parameters. Later calls substitute the values and turn the rows into instances as
Django's ``ModelIterable`` does (``select_related`` objects, annotations, field converters,
``prefetch_related``). Statements still go through the connection's cursor (logged, counted).

The build function must be a pure function of its arguments: the two compilations must give the
same SQL and the same parameters except where the markers went. When they do not (a value read
from the clock or the database while building), the query is not prepared and every call
evaluates the queryset as Django does: slower, never wrong. Arguments are ints, strings,
datetimes and lists of these; a list's length is part of the query's shape (one compilation per
length).
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet, prefetch_related_objects
from django.db.models.query import ModelIterable, get_related_populators
from django.db.transaction import TransactionManagementError

_UNPREPARABLE = object()


class PreparedQuery:
    """``build(*values) -> QuerySet`` compiled once per connection and shape; calling it returns the instances.

    Made once (at import, or kept in a dict): each one is a key of the per-connection caches.
    """

    def __init__(self, build: Callable[..., QuerySet]) -> None:
        self.build = build

    def __call__(self, *values: Any, using: str = DEFAULT_DB_ALIAS) -> list[Model]:
        connection = connections[using]
        shape = tuple(len(v) if isinstance(v, list | tuple) else type(v) for v in values)
        cache = connection.__dict__.setdefault("_opsdb_prepared", {})
        key = (self, shape)
        entry = cache.get(key)
        if entry is None:
            entry = cache[key] = _prepare(self.build, values, using) or _UNPREPARABLE
        if entry is _UNPREPARABLE:
            return list(self.build(*values).using(using))
        return entry.run(values, connection, using)

    def is_prepared(self, *values: Any, using: str = DEFAULT_DB_ALIAS) -> bool:
        """Whether calls with values of this shape run the SQL made once (for tests)."""
        self(*values, using=using)
        shape = tuple(len(v) if isinstance(v, list | tuple) else type(v) for v in values)
        return connections[using].__dict__["_opsdb_prepared"][(self, shape)] is not _UNPREPARABLE


def _markers(values: Sequence[Any], series: int) -> list[Any]:
    """Stand-ins for ``values``, distinct from each other, from any constant and between the two series."""
    counter = iter(range(1, 10**6))

    def marker(value: Any) -> Any:
        n = next(counter)
        if isinstance(value, bool) or value is None:
            raise TypeError("PreparedQuery takes ints, strings, datetimes and lists of them")
        if isinstance(value, int):
            return (7 + series) * 10**14 + n
        if isinstance(value, str):
            return f"~prepared{series}:{n}~"
        if isinstance(value, datetime):
            return datetime(1990 + series, 1, 1, tzinfo=UTC) + timedelta(seconds=n)
        raise TypeError(f"PreparedQuery cannot take {type(value).__name__} values")

    return [[marker(v) for v in value] if isinstance(value, list | tuple) else marker(value) for value in values]


def _flat(values: Sequence[Any]) -> list[Any]:
    return [item for value in values for item in (value if isinstance(value, list | tuple) else [value])]


def _compile(build: Callable[..., QuerySet], values: list[Any], using: str):
    queryset = build(*values).using(using)
    compiler = queryset.query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    return queryset, compiler, sql, list(params)


def _prepare(build: Callable[..., QuerySet], values: Sequence[Any], using: str) -> "_Prepared | None":
    connection = connections[using]
    first, second = _markers(values, 1), _markers(values, 2)
    try:
        queryset, compiler, sql, params = _compile(build, first, using)
        _, _, sql_again, params_again = _compile(build, second, using)
    except (EmptyResultSet, FullResultSet):  # nothing to ask the database (an empty list): Django knows best
        return None
    if (sql != sql_again or len(params) != len(params_again) or queryset._iterable_class is not ModelIterable
            or queryset._known_related_objects):
        return None
    adapt = connection.ops.adapt_datetimefield_value
    flat_first, flat_second = _flat(first), _flat(second)
    slots = []  # (parameter position, index of the flat value, adapt it as a datetime?)
    for position, (one, two) in enumerate(zip(params, params_again, strict=True)):
        found = None
        for index, (a, b) in enumerate(zip(flat_first, flat_second, strict=True)):
            if one == a and two == b:
                found = (position, index, False)
            elif isinstance(a, datetime) and one == adapt(a) and two == adapt(b):
                found = (position, index, True)
            if found:
                break
        if found:
            slots.append(found)
        elif one != two:
            return None  # a value that differs between the builds and is not ours: not a pure function
    if len({index for _, index, _ in slots}) != len(flat_first):
        return None  # a value that did not reach the parameters as it was (e.g. turned into a pattern)
    return _Prepared(build, queryset, compiler, sql, params, slots, using)


class _Prepared:
    """The SQL, where the values go, and how rows become instances (``ModelIterable``'s work, done once)."""

    def __init__(self, build: Callable[..., QuerySet], queryset: QuerySet, compiler, sql: str, params: list[Any],
                 slots: list[tuple], using: str) -> None:
        self.build, self.sql, self.params, self.slots = build, sql, params, slots
        self.locks = bool(queryset.query.select_for_update and compiler.connection.features.has_select_for_update)
        self.prefetches = bool(queryset._prefetch_related_lookups)
        select, klass_info = compiler.select, compiler.klass_info
        self.model = klass_info["model"]
        fields = klass_info["select_fields"]
        self.start, self.end = fields[0], fields[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start:self.end]]
        self.annotations = list(compiler.annotation_col_map.items())
        self.converters = [(position, convs, expression) for position, (convs, expression)
                           in compiler.get_converters([s[0] for s in select[:compiler.col_count]]).items()]
        self.populators = get_related_populators(klass_info, select, using)

    def run(self, values: Sequence[Any], connection, using: str) -> list[Model]:
        if self.locks and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(self.params)
        flat = _flat(values)
        adapt = connection.ops.adapt_datetimefield_value
        for position, index, as_datetime in self.slots:
            params[position] = adapt(flat[index]) if as_datetime else flat[index]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows = cursor.fetchall()
        objects = []
        for row in rows:
            if self.converters:
                row = list(row)
                for position, convs, expression in self.converters:
                    value = row[position]
                    for converter in convs:
                        value = converter(value, expression, connection)
                    row[position] = value
            obj = self.model.from_db(using, self.init_list, row[self.start:self.end])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            objects.append(obj)
        if self.prefetches and objects:  # the lookups of a fresh build: Prefetch objects are not shared
            prefetch_related_objects(objects, *self.build(*values)._prefetch_related_lookups)
        return objects


# --- psycopg's parsing of long statements --------------------------------------------------------
#
# psycopg parses a statement for its ``%s`` placeholders at every execution, and keeps the result
# (an LRU cache of 128) only for statements of at most 4,096 characters and 50 parameters. The
# batch paths' statements are longer (a state-log INSERT of 20 rows has 160 parameters, a payload
# read of 20 jobs ~9,000 characters): parsing them again cost ~10 % of a batch's CPU.

PSYCOPG_CACHED_STATEMENT_LENGTH = 64 * 1024
PSYCOPG_CACHED_STATEMENT_PARAMS = 4096


def cache_long_statements() -> None:
    """Let psycopg keep its parsing of statements up to 64 KiB and 4,096 parameters (OpsdbConfig.ready).

    The cache stays an LRU of 128 entries; the statements this project repeats are made once per
    shape (``PreparedQuery``, ``insert_rows``), so they are few. Without psycopg (SQLite only) or
    if a psycopg release renames the limits, nothing changes.
    """
    try:
        from psycopg import _queries
    except ImportError:  # SQLite-only installs
        return
    for name, value in (("MAX_CACHED_STATEMENT_LENGTH", PSYCOPG_CACHED_STATEMENT_LENGTH),
                        ("MAX_CACHED_STATEMENT_PARAMS", PSYCOPG_CACHED_STATEMENT_PARAMS)):
        if isinstance(getattr(_queries, name, None), int):
            setattr(_queries, name, max(getattr(_queries, name), value))


# --- writes whose SQL is made once ---------------------------------------------------------------
#
# The hot path's writes (a job's transition, its state log and job log lines, a copy record)
# through ``Model.save``/``bulk_create`` compile an INSERT or UPDATE of every column each time.
# These write the same rows with SQL made once per connection, model and column set; values
# still go through each field's ``pre_save`` and ``get_db_prep_save``. No model signals are
# sent: use them only for models nobody listens to (job rows, log lines, copy records).


def _insert_fields(obj: Model) -> list:
    """The columns an INSERT of ``obj`` writes: all but an unset primary key."""
    return [f for f in type(obj)._meta.concrete_fields if not f.primary_key or getattr(obj, f.attname) is not None]


def _insert_head(connection, model, fields: list) -> str:
    quote = connection.ops.quote_name
    return f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"


def _insert_params(objs: Sequence[Model], fields: list, connection) -> list:
    return [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in objs for field in fields]


def statement_made_once(connection, key: tuple, make: Callable[[], str]) -> str:
    """The SQL for ``key`` on this connection: ``make()`` the first time, then kept (the per-connection cache)."""
    cache = connection.__dict__.setdefault("_opsdb_prepared", {})
    sql = cache.get(key)
    if sql is None:
        sql = cache[key] = make()
    return sql


def insert_rows(objs: Sequence[Model], *, using: str = DEFAULT_DB_ALIAS, unique_fields: Sequence[str] = (),
                update_fields: Sequence[str] = ()) -> None:
    """INSERT unsaved instances of one model in one statement (ids are not read back).

    ``unique_fields`` and ``update_fields``: an upsert (``ON CONFLICT (unique) DO UPDATE``), as
    ``bulk_create(update_conflicts=True, ...)`` makes it.
    """
    if not objs:
        return
    connection = connections[using]
    model = type(objs[0])
    fields = _insert_fields(objs[0])
    key = ("insert", model, len(objs), tuple(unique_fields), tuple(update_fields), len(fields))

    def make() -> str:
        row = f"({', '.join(['%s'] * len(fields))})"
        sql = f"{_insert_head(connection, model, fields)} VALUES {', '.join([row] * len(objs))}"
        if unique_fields:
            from django.db.models.constants import OnConflict

            meta = model._meta
            sql += " " + connection.ops.on_conflict_suffix_sql(
                fields, OnConflict.UPDATE, [meta.get_field(name).column for name in update_fields],
                [meta.get_field(name).column for name in unique_fields])
        return sql

    sql = statement_made_once(connection, key, make)
    params = _insert_params(objs, fields, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def update_row(obj: Model, fields: Sequence[str], *, where: dict[str, Any], using: str = DEFAULT_DB_ALIAS,
               also: Sequence[Model] = ()) -> int:
    """UPDATE ``obj``'s row, only these fields (``auto_now`` ones refreshed), where its columns ``where`` still hold.

    ``also``: unsaved rows (of any models) inserted only if the row was updated: on PostgreSQL in
    the same statement (``WITH updated AS (UPDATE … RETURNING 1) INSERT … SELECT … FROM updated``),
    elsewhere one INSERT per row after the UPDATE. Returns the number of rows changed (0: the row no
    longer matched ``where``, and nothing was inserted).
    """
    connection = connections[using]
    meta = type(obj)._meta
    targets = [meta.get_field(name) for name in fields]
    targets += [f for f in meta.concrete_fields if getattr(f, "auto_now", False) and f not in targets]
    conditions = [meta.get_field(name) for name in where]
    together = bool(also) and connection.vendor == "postgresql"
    also_fields = [_insert_fields(row) for row in also] if together else []
    key = ("update", type(obj), tuple(f.attname for f in targets), tuple(f.attname for f in conditions),
           tuple((type(row), len(row_fields)) for row, row_fields in zip(also, also_fields, strict=False)))

    def make() -> str:
        quote = connection.ops.quote_name
        sets = ", ".join(f"{quote(f.column)} = %s" for f in targets)
        matches = " AND ".join(f"{quote(f.column)} = %s" for f in [meta.pk, *conditions])
        sql = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {matches}"
        if together:
            inserts = [f"{_insert_head(connection, type(row), row_fields)} "
                       f"SELECT {', '.join(['%s'] * len(row_fields))} FROM \"updated\""
                       for row, row_fields in zip(also, also_fields, strict=True)]
            *first, last = inserts
            sql = f'WITH "updated" AS ({sql} RETURNING 1)' + "".join(
                f', "also_{n}" AS ({insert})' for n, insert in enumerate(first)) + f" {last}"
        return sql

    sql = statement_made_once(connection, key, make)
    params = [f.get_db_prep_save(f.pre_save(obj, False), connection) for f in targets]
    params += [meta.pk.get_db_prep_value(obj.pk, connection)]
    params += [f.get_db_prep_value(value, connection) for f, value in zip(conditions, where.values(), strict=True)]
    for row, row_fields in zip(also, also_fields, strict=False):
        params += _insert_params([row], row_fields, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        updated = cursor.rowcount
    if updated == 1 and also and not together:
        for row in also:
            insert_rows([row], using=using)
    return updated
