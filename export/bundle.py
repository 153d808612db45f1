"""One call from a trained model to verified TF Serving and ONNX artifacts."""

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from export.edge_cases import edge_case_batch
from export.onnx import check_opset
from export.onnx import export_onnx
from export.onnx_data import copy_onnx
from export.parity import ParityReport
from export.parity import verify_parity
from export.precision import float32_model
from export.precision_cost import THROUGHPUT_BATCH_SIZE
from export.precision_cost import PrecisionCost
from export.precision_cost import measure_precision_cost
from export.saved_model import export_saved_model
from export.saved_model import write_models_config
from export.tables import check_table_precision
from export.tables import quantized_twin
from tffm import constants


class ParityError(RuntimeError):
    """Raised when an exported artifact disagrees with the Keras model."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(
            "Exported artifacts differ from the Keras model; nothing was "
            "written.\n" + report.table()
        )
        self.report = report


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where `export_for_serving` put each artifact, and the parity report."""

    saved_model: str
    onnx: str
    onnx_ids: str
    models_config: str
    report: ParityReport | None
    cost: PrecisionCost | None = None


def export_for_serving(
    model: Any,
    output: str,
    *,
    model_name: str,
    version: int = 1,
    opset: int = constants.DEFAULT_OPSET,
    verify: bool = True,
    tolerance: tuple[float, float] = constants.PARITY_TOLERANCE,
    external_data: bool | None = None,
    table_precision: str = "float32",
    validation: tuple[Mapping[str, np.ndarray], np.ndarray] | None = None,
    report_cost: bool = True,
) -> ExportResult:
    """Exports, verifies and only then publishes a model's artifacts.

    Layout under `output`:
    - `saved_model/<model_name>/<version>/`: SavedModel with warmup records
      (TF Serving's `base_path` is `saved_model/<model_name>`), and the
      raw-input ONNX as `model.onnx` beside it (TF Serving ignores it;
      `tffm serve` reads it), so one mounted directory and one
      `models.config` serve both servers;
    - `models.config`: TF Serving model config for it;
    - `onnx/<model_name>-<version>.onnx`: raw-input ONNX;
    - `onnx/<model_name>-<version>.ids.onnx`: ids-in core ONNX;
    - `onnx/<model_name>-<version>.parity.md`: the parity table, and with
      a `table_precision` other than float32 what it costs
      (`export.precision_cost`).
    A model whose weights exceed 1 GiB (or any, with `external_data=True`)
    keeps each ONNX file's weights in a data file beside it
    (`<file>.onnx.data`, ONNX external data; `model.onnx.data` in the
    version directory); the `.onnx` file does not load without it.

    With `table_precision="int8"` or `"float16"` both ONNX files store
    the embedding tables at that precision (`export.tables`), and the
    SavedModel holds the same dequantized tables in float32, so all three
    artifacts compute one function: the model as exported, against which
    parity is checked (at the usual tolerance).

    Everything is written to a staging directory first; if parity fails
    (`verify=True`), the staging directory is removed and `ParityError`
    raised, so no half-written or unverified artifact is left behind.

    Args:
        model: a trained tffm model with a feature spec.
        output: str. Base directory.
        model_name: str. Name for TF Serving and the ONNX files.
        version: int. Positive model version.
        opset: int. ONNX opset.
        verify: bool. Run the parity check (default) before publishing.
        tolerance: `(atol, rtol)` for the parity check.
        external_data: bool or None. ONNX weights in data files (see
            `export.export_onnx`); `None`: for models over 1 GiB.
        table_precision: str. `"float32"` (default), `"float16"` or
            `"int8"` embedding tables in the ONNX files.
        validation: `(raw, labels)`: labelled rows on which the cost
            report measures the AUC / logloss change (binary task).
        report_cost: bool. Measure the cost of a lower `table_precision`
            against a float32 export (default; it exports float32 once
            more, to a staging file).

    Returns:
        An `ExportResult`.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            "`version` must be a positive integer. "
            f"Received: version={version!r}"
        )
    if not model_name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            "`model_name` must use letters, digits, '_' and '-'. "
            f"Received: model_name={model_name!r}"
        )
    check_opset(opset)  # before the SavedModel is written, not after
    check_table_precision(table_precision)
    model = float32_model(model)
    exported, _ = quantized_twin(model, table_precision)
    os.makedirs(output, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=output)
    try:
        sm_rel = os.path.join("saved_model", model_name, str(version))
        onnx_rel = os.path.join("onnx", f"{model_name}-{version}.onnx")
        ids_rel = os.path.join("onnx", f"{model_name}-{version}.ids.onnx")
        os.makedirs(os.path.join(staging, "onnx"))
        export_saved_model(
            exported,
            os.path.join(staging, sm_rel),
            model_name=model_name,
            warmup_batch=edge_case_batch(model.features, 8),
        )
        export_onnx(
            model,
            os.path.join(staging, onnx_rel),
            opset=opset,
            version=version,
            external_data=external_data,
            table_precision=table_precision,
        )
        export_onnx(
            model,
            os.path.join(staging, ids_rel),
            opset=opset,
            version=version,
            raw_inputs=False,
            external_data=external_data,
            table_precision=table_precision,
        )
        report = None
        if verify:
            report = verify_parity(
                exported,
                saved_model=os.path.join(staging, sm_rel),
                onnx=os.path.join(staging, onnx_rel),
                tolerance=tolerance,
            )
            if not report.ok:
                raise ParityError(report)
        cost = None
        if table_precision != "float32" and report_cost:
            cost = _measure_cost(
                model,
                os.path.join(staging, onnx_rel),
                os.path.join(staging, "baseline"),
                table_precision=table_precision,
                opset=opset,
                external_data=external_data,
                validation=validation,
            )
        if report is not None or cost is not None:
            with open(
                os.path.join(
                    staging, "onnx", f"{model_name}-{version}.parity.md"
                ),
                "w",
            ) as f:
                f.write(_parity_md(report, cost, table_precision))
        copy_onnx(  # with its data file, if it has one
            os.path.join(staging, onnx_rel),
            os.path.join(staging, sm_rel, constants.ONNX_MODEL_FILE),
        )
        config_rel = "models.config"
        write_models_config(
            os.path.join(staging, config_rel),
            {model_name: f"/models/{model_name}"},
        )
        _publish(staging, output, sm_rel, config_rel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(
        saved_model=os.path.join(output, sm_rel),
        onnx=os.path.join(output, onnx_rel),
        onnx_ids=os.path.join(output, ids_rel),
        models_config=os.path.join(output, config_rel),
        report=report,
        cost=cost,
    )


def _measure_cost(
    model: Any,
    onnx: str,
    folder: str,
    *,
    table_precision: str,
    opset: int,
    external_data: bool | None,
    validation: tuple[Mapping[str, np.ndarray], np.ndarray] | None,
) -> PrecisionCost:
    """Exports float32 ONNX to `folder` (then removed) and measures `onnx`."""
    os.makedirs(folder)
    try:
        baseline = export_onnx(
            model,
            os.path.join(folder, "float32.onnx"),
            opset=opset,
            external_data=external_data,
        )
        batch = edge_case_batch(model.features, THROUGHPUT_BATCH_SIZE, seed=1)
        if validation is not None:
            rows = len(validation[1])
            if rows >= THROUGHPUT_BATCH_SIZE:
                batch = {k: np.asarray(v) for k, v in validation[0].items()}
        return measure_precision_cost(
            model,
            baseline,
            onnx,
            table_precision=table_precision,
            batch=batch,
            validation=validation,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _parity_md(
    report: ParityReport | None, cost: PrecisionCost | None, precision: str
) -> str:
    parts = []
    if report is not None:
        if precision != "float32":
            parts.append(
                f"Reference: the model as exported, its tables stored in "
                f"{precision} and read back (dequantized) in float32; the "
                "change from the trained model is in the cost table below."
            )
        parts.append(report.table())
    if cost is not None:
        parts.append(cost.table())
    return "\n\n".join(parts) + "\n"


def _publish(staging: str, output: str, sm_rel: str, config: str) -> None:
    """Moves verified files from staging into `output`, replacing old ones."""
    final = os.path.join(output, sm_rel)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(os.path.join(staging, sm_rel), final)
    os.makedirs(os.path.join(output, "onnx"), exist_ok=True)
    for name in os.listdir(os.path.join(staging, "onnx")):
        os.replace(
            os.path.join(staging, "onnx", name),
            os.path.join(output, "onnx", name),
        )
    os.replace(os.path.join(staging, config), os.path.join(output, config))
