"""The declared columns of every table an archive job writes: one type per column, whatever the input.

Types are never inferred from the values: a frame folder run without ``--fps`` has no frame
times (all null) and a video has them (doubles), and a Parquet writer that guessed each part's
types from its values would give the parts two schemas that cannot be joined. Every writer of
``surgenet batch`` / ``surgenet embed`` takes its columns from here: the per-input parts, the
joined table (``predictions.parquet`` / ``embeddings.parquet``) and ``failures.csv``.
"""

from __future__ import annotations

FAILURE_COLUMNS = ("video", "path", "status", "expected_frames", "read_frames", "error")
PARTIAL, FAILED = "partial", "failed"  # failures.csv status: rows kept / nothing kept


def _pa():
    from .outputs import _pyarrow

    return _pyarrow()[0]


def table_schema(mode: str, dtype: str = "float32"):
    """The Arrow schema of a job's table: ``embed`` (embeddings) or a task (predictions).

    ``time`` (seconds from the stream's start) is float64 and null where an input has no clock
    (a frame folder without ``--fps``); every other column is never null.
    """
    pa = _pa()
    columns = [pa.field("video", pa.string(), nullable=False), pa.field("source", pa.string(), nullable=False),
               pa.field("frame", pa.int64(), nullable=False), pa.field("name", pa.string(), nullable=False),
               pa.field("time", pa.float64(), nullable=True)]
    if mode == "embed":
        value = pa.float16() if dtype == "float16" else pa.float32()
        columns.append(pa.field("embedding", pa.list_(value), nullable=False))
    else:
        columns += [pa.field("prediction", pa.string(), nullable=False),
                    pa.field("probabilities", pa.list_(pa.float32()), nullable=False)]
    return pa.schema(columns)


def conform(table, mode: str, dtype: str = "float32"):
    """``table`` cast to the declared schema: parts written before it was declared had a null-typed
    ``time``, and parts of an earlier run may hold embeddings at another ``--dtype``."""
    schema = table_schema(mode, dtype)
    return table.select(schema.names).cast(schema)


__all__ = ["FAILED", "FAILURE_COLUMNS", "PARTIAL", "conform", "table_schema"]
