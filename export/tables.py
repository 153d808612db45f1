"""Embedding tables stored in int8 or float16, dequantized after the gather.

In a CTR model the fused embedding table is nearly all of the file (26
fields x 100,000 ids x 16 floats is 166 MB of a 179 MB ONNX file), so a
smaller edge model means a smaller table. `table_precision`:

- `"float32"`: the table as trained;
- `"int8"`: row-wise symmetric int8, as TorchRec's inference tables: row
  `r` is stored as `q_r = round(v_r / s_r)` in `[-127, 127]` with one
  float32 scale `s_r = max|v_r| / 127` (0 for a row of zeros), and read
  back as `float32(q_r) * s_r`;
- `"float16"`: the table in float16, read back with a cast.

The linear weights (one number per row) are stored in float16 under both
`"int8"` and `"float16"`: an int8 value with its own float32 scale would
take more bytes than the float32 it replaces.

The exported graphs read the stored rows with standard ops only: ONNX
`Gather` on the int8 (or float16) table, `Cast` to float32, `Mul` by the
gathered scales; no custom op. The dequantized weights are exactly what
the graph computes (a float32 product, correctly rounded, equals numpy's),
so `quantized_twin` gives the model as exported: the Keras model with
those weights, against which parity is checked at the usual tolerance.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

TABLE_PRECISIONS = ("float32", "float16", "int8")
INT8_LEVELS = 127  # symmetric: -127..127 (no -128, so -q is representable)
SCALE_SUFFIX = "__scale"
_BLOCK_ROWS = 1 << 16


@dataclasses.dataclass(frozen=True)
class StoredTable:
    """A table as stored: `values` (int8, float16 or float32), `scales`.

    `scales` is `(num_rows,)` float32 for int8 values, else None.
    """

    values: np.ndarray
    scales: np.ndarray | None

    def dequantize(self) -> np.ndarray:
        """The float32 table the exported graph reads."""
        values = self.values.astype(np.float32)
        if self.scales is None:
            return values
        shape = (-1,) + (1,) * (values.ndim - 1)
        product: np.ndarray = values * self.scales.reshape(shape)  # float32
        return product

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """`self.dequantize()[ids]`, reading only those rows."""
        values: np.ndarray = self.values[ids].astype(np.float32)
        if self.scales is None:
            return values
        scales = self.scales[ids]  # ids.shape
        if values.ndim > scales.ndim:
            scales = scales[..., None]
        product: np.ndarray = values * scales  # float32
        return product

    @property
    def nbytes(self) -> int:
        extra = 0 if self.scales is None else self.scales.nbytes
        return int(self.values.nbytes) + int(extra)


def check_table_precision(table_precision: object) -> str:
    """`table_precision`, or a ValueError naming the choices."""
    if table_precision not in TABLE_PRECISIONS:
        raise ValueError(
            f"`table_precision` must be one of {list(TABLE_PRECISIONS)}. "
            f"Received: table_precision={table_precision!r}"
        )
    return str(table_precision)


def store_table(table: np.ndarray, precision: str, *, name: str) -> StoredTable:
    """`table` as stored at `precision` (see the module docstring).

    Args:
        table: `(num_rows, embedding_dim)` or `(num_rows,)` float array.
        precision: `"float32"`, `"float16"` or `"int8"`; a 1-D table (the
            linear weights) is stored in float16 under `"int8"`.
        name: str. The table's name, for error messages.

    Returns:
        A `StoredTable`.
    """
    check_table_precision(precision)
    table = np.asarray(table)
    bad = ~np.isfinite(table)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"Table {name!r} has a non-finite value in row {row}; it cannot "
            "be stored at a lower precision."
        )
    if precision == "float32":
        return StoredTable(table.astype(np.float32), None)
    if precision == "float16" or table.ndim == 1:
        big = np.abs(table) > np.finfo(np.float16).max
        if big.any():
            row = int(np.argwhere(big)[0][0])
            raise ValueError(
                f"Table {name!r} has a value beyond float16's range "
                f"(65504) in row {row}: {table[row]}. Export it with "
                "table_precision='float32' (or 'int8' for the embeddings)."
            )
        return StoredTable(table.astype(np.float16), None)
    return _int8_rows(table)


def _int8_rows(table: np.ndarray) -> StoredTable:
    """Row-wise symmetric int8 of a 2-D table, one float32 scale per row.

    In blocks of `_BLOCK_ROWS` rows: the float64 temporaries of a whole
    39M-row table would take 5 GB each.
    """
    values = np.empty(table.shape, np.int8)
    scales = np.empty(len(table), np.float32)
    for first in range(0, len(table), _BLOCK_ROWS):
        block = slice(first, first + _BLOCK_ROWS)
        wide = table[block].astype(np.float64)  # (R, D)
        peak = np.abs(wide).max(axis=1, initial=0.0)  # (R,)
        scales[block] = peak / INT8_LEVELS
        # Divided by the float32 scale the graph multiplies by; a scale
        # rounded down can put the peak just past 127, hence the clip.
        divisor = scales[block].astype(np.float64)
        divisor[divisor == 0] = 1.0
        q = np.rint(wide / divisor[:, None])
        values[block] = np.clip(q, -INT8_LEVELS, INT8_LEVELS)
    return StoredTable(values, scales)


def table_variables(model: Any) -> dict[str, Any]:
    """`{variable path: variable}` of every fused table in `model`.

    The `embeddings` and `linear_weights` of each `FeatureEmbedding`.
    """
    from tffm.layers import FeatureEmbedding  # deferred: Keras

    found = {}
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, FeatureEmbedding):
            for variable in (layer.embeddings, layer.linear_weights):
                if variable is not None:
                    found[variable.path] = variable
    return found


def quantized_twin(
    model: Any, table_precision: str
) -> tuple[Any, dict[str, StoredTable]]:
    """The model as exported at `table_precision`, and its stored tables.

    The twin has `model`'s config and weights, its tables replaced by the
    dequantized ones (exactly what the exported graph reads); `model` is
    not changed. At `"float32"` it is `model` itself.

    Returns:
        `(twin, {variable path in twin: StoredTable})`.
    """
    check_table_precision(table_precision)
    if table_precision == "float32":
        return model, {}
    twin = type(model).from_config(model.get_config())
    twin.set_weights(model.get_weights())
    stored = {}
    for path, variable in table_variables(twin).items():
        table = store_table(variable.numpy(), table_precision, name=path)
        variable.assign(table.dequantize())
        stored[path] = table
    return twin, stored


def dequantize_after_gather(
    proto: Any, tables: Mapping[str, StoredTable]
) -> None:
    """Rewrites each `Gather` of a stored table to read float32 rows.

    `Gather(T, ids)` becomes `Cast(Gather(T, ids), float)`, times
    `Gather(scales, ids)` for an int8 table: the rows `ids` reads, as the
    float32 graph read them, from standard ops only. A `Gather` of fixed
    rows (`ids` an initializer: the numeric fields' rows) becomes those
    rows, dequantized, as a float32 initializer; onnxruntime would fold it
    at load time anyway, reading the whole table and scales to do so, and
    keep the memory that took.

    Args:
        proto: the `ModelProto`, its table initializers holding the stored
            values, and an int8 table's scales in `<name>__scale`.
        tables: `{table initializer: StoredTable}`.
    """
    from onnx import TensorProto  # deferred: onnx
    from onnx import helper
    from onnx import numpy_helper

    graph = proto.graph
    fixed = {i.name: i for i in graph.initializer}
    nodes = []
    rewritten = set()
    for node in graph.node:
        table = next((x for x in node.input if x in tables), None)
        if table is None:
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if node.op_type != "Gather" or node.input[0] != table or axis != 0:
            raise ValueError(
                f"Table {table!r} is read by a {node.op_type} node "
                f"({node.name!r}), not by a row Gather; it cannot be "
                "stored at a lower precision."
            )
        rewritten.add(table)
        out = node.output[0]
        ids = node.input[1]
        stored = tables[table]
        if ids in fixed:
            rows = stored.rows(numpy_helper.to_array(fixed[ids]))
            graph.initializer.append(numpy_helper.from_array(rows, out))
            continue
        p = f"{node.name or out}__dq_"
        gathered = helper.make_node(
            "Gather", [table, ids], [p + "rows"], name=p + "rows"
        )  # ids.shape + (D,), int8 / float16
        nodes.append(gathered)
        if stored.scales is None:
            nodes.append(
                helper.make_node(
                    "Cast",
                    [p + "rows"],
                    [out],
                    name=p + "cast",
                    to=TensorProto.FLOAT,
                )
            )
            continue
        nodes += [
            helper.make_node(
                "Cast",
                [p + "rows"],
                [p + "float"],
                name=p + "cast",
                to=TensorProto.FLOAT,
            ),
            helper.make_node(
                "Gather",
                [table + SCALE_SUFFIX, ids],
                [p + "scale"],
                name=p + "scale",
            ),  # ids.shape + (1,)
            helper.make_node(
                "Mul", [p + "float", p + "scale"], [out], name=p + "mul"
            ),  # ids.shape + (D,)
        ]
    missing = set(tables) - rewritten
    if missing:
        raise ValueError(f"No Gather reads tables {sorted(missing)}.")
    del graph.node[:]
    graph.node.extend(nodes)
