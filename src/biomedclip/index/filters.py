"""Filters on the metadata columns of an index (modality, split, journal, year, label...).

A filter is a list of conditions, all of which must hold. Each is ``(column, op, value)`` with op
one of ``= != < <= > >= in``; :func:`parse_filter` reads the CLI spelling ``year>=2019``,
``modality=image``, ``split=train,val`` (a comma list means any of). :func:`filter_mask` evaluates
them on an Arrow table with ``pyarrow.compute`` (values are cast to the column's type).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from biomedclip.errors import InputError

OPS = ("=", "!=", "<", "<=", ">", ">=", "in")
_EXPR = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InputError(f"unknown filter operator {self.op!r} (use one of {' '.join(OPS)})")


def parse_filter(expr: str) -> Condition:
    """``"year>=2019"`` -> ``Condition("year", ">=", "2019")``; ``"a=x,y"`` means a in {x, y}."""
    m = _EXPR.match(expr)
    if not m:
        raise InputError(f"filter {expr!r}: expected COLUMN=VALUE, COLUMN>=VALUE, ...")
    column, op, value = m.groups()
    if op == "=" and "," in value:
        return Condition(column, "in", [v.strip() for v in value.split(",")])
    return Condition(column, op, value)


def conditions(where: Any) -> list[Condition]:
    """Normalise a filter given as a mapping ``{col: value | [values]}``, strings or Conditions."""
    if where is None:
        return []
    if isinstance(where, (str, Condition)):
        where = [where]
    if isinstance(where, Mapping):
        return [
            Condition(k, "in", list(v))
            if isinstance(v, (list, tuple, set))
            else Condition(k, "=", v)
            for k, v in where.items()
        ]
    out = []
    for c in where:
        out.append(c if isinstance(c, Condition) else parse_filter(str(c)))
    return out


def _cast(values: Sequence[Any], typ: pa.DataType, column: str) -> pa.Array:
    try:
        return pa.array(list(values)).cast(typ) if len(values) else pa.array([], typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
        raise InputError(f"filter on {column!r}: {list(values)!r} is not of type {typ}") from e


def filter_mask(table: pa.Table, where: Any) -> np.ndarray:
    """Boolean mask over ``table``'s rows where every condition holds (nulls never match)."""
    import pyarrow.compute as pc

    mask = np.ones(table.num_rows, dtype=bool)
    for c in conditions(where):
        if c.column not in table.column_names:
            raise InputError(
                f"filter on unknown column {c.column!r} (columns: {', '.join(table.column_names)})"
            )
        col = table.column(c.column)
        if c.op == "in":
            result = pc.is_in(col, value_set=_cast(c.value, col.type, c.column))
        else:
            scalar = _cast([c.value], col.type, c.column)[0]
            fn = {"=": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal"}
            fn |= {">": "greater", ">=": "greater_equal"}
            result = pc.call_function(fn[c.op], [col, scalar])
        mask &= np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), bool)
    return mask
