"""What REST and gRPC share: predict, model metadata, status and reload."""

import concurrent.futures
from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import text_format

from serving import protos
from serving import tensors
from serving.errors import ServingError
from serving.errors import invalid
from serving.manager import ModelManager
from serving.manager import Servable
from serving.metrics import Metrics
from serving.model_config import parse_model_config
from tffm import constants

PREDICT_METHOD = "tensorflow/serving/predict"
SIGNATURE_DEF = "signature_def"
# The metrics' `model` label of a name no configured model has: clients
# choose the names they send, so labelling them as sent would let anyone
# grow the series without bound.
UNKNOWN_MODEL = "_unknown"


class Service:
    """Answers TF Serving's calls from a `ModelManager`.

    Args:
        manager: the `ModelManager` holding the loaded versions.
        metrics: the process's `Metrics`.
    """

    def __init__(self, manager: ModelManager, metrics: Metrics) -> None:
        self.manager = manager
        self.metrics = metrics

    def model_label(self, name: str) -> str:
        """`name` if a configured model has it, else `UNKNOWN_MODEL`."""
        return name if name in self.manager.models else UNKNOWN_MODEL

    def feeds(
        self,
        servable: Servable,
        signature_name: str,
        raw: Mapping[str, Any],
    ) -> tuple[dict[str, np.ndarray], int]:
        """Checks raw values; the ONNX feeds and the batch size.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature or bad
                values (naming the feature).
        """
        check_signature_name(signature_name)
        try:
            feeds = servable.predictor.feed(raw)
        except ValueError as error:
            raise invalid(str(error)) from None
        size = len(next(iter(feeds.values())))
        if size == 0:
            raise invalid("The request holds no examples (batch size 0).")
        return feeds, size

    def submit(
        self,
        servable: Servable,
        signature_name: str,
        raw: Mapping[str, Any],
    ) -> "concurrent.futures.Future[dict[str, np.ndarray]]":
        """`feeds`, then queues them to run (batcher or thread pool).

        Raises:
            ServingError: as `feeds`; UNAVAILABLE when the batch queue is
                full.
        """
        feeds, size = self.feeds(servable, signature_name, raw)
        return servable.run(feeds, size)

    def metadata(
        self,
        name: str,
        version: int | None,
        label: str | None,
        fields: list[str],
    ) -> Any:
        """A `GetModelMetadataResponse` with the `signature_def` map."""
        if not fields:
            raise invalid(
                "GetModelMetadataRequest must specify at least one "
                "metadata_field"
            )
        for field in fields:
            if field != SIGNATURE_DEF:
                raise invalid(f"Metadata field {field} is not supported")
        servable = self.manager.resolve(name, version, label)
        response = protos.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF].Pack(signature_def_map(servable))
        return response

    def status(self, name: str, version: int | None, label: str | None) -> Any:
        """A `GetModelStatusResponse`."""
        response = protos.GetModelStatusResponse()
        for number, state, error in self.manager.status(name, version, label):
            entry = response.model_version_status.add()
            entry.version = number
            entry.state = protos.MODEL_STATES[state]
            entry.status.error_code = protos.ERROR_CODES[
                "UNKNOWN" if error else "OK"
            ]
            entry.status.error_message = error
        return response

    def reload(self, request: Any) -> Any:
        """A `ReloadConfigResponse` once `request.config` is served.

        Raises:
            ServingError: INVALID_ARGUMENT for a config that is not a
                `model_config_list` or does not parse; UNKNOWN (TF
                Serving's code) naming the models that failed to load.
        """
        config = request.config
        if config.WhichOneof("config") != "model_config_list":
            raise invalid(
                "ServerModelConfig type not supported by "
                "HandleReloadConfigRequest. Only ModelConfigList is "
                "currently supported"
            )
        text = text_format.MessageToString(config)
        try:
            models = parse_model_config(text, "ReloadConfigRequest", "")
        except ValueError as error:
            raise invalid(str(error)) from None
        failures = self.manager.reload(models)
        if failures:
            raise ServingError(
                "UNKNOWN",
                "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())),
            )
        response = protos.ReloadConfigResponse()
        response.status.error_code = protos.ERROR_CODES["OK"]
        return response


def check_signature_name(name: str) -> None:
    """Only `serving_default` (or empty, meaning it) exists."""
    if name and name != constants.SIGNATURE_NAME:
        raise ServingError(
            "FAILED_PRECONDITION", f'Serving signature key "{name}" not found.'
        )


def signature_def_map(servable: Servable) -> Any:
    """The model's `serving_default` signature, as TF Serving shows it."""
    signatures = protos.SignatureDefMap()
    signature = signatures.signature_def[constants.SIGNATURE_NAME]
    signature.method_name = PREDICT_METHOD
    for feature in servable.features:
        info = signature.inputs[feature.name]
        info.name = feature.name
        info.dtype = protos.DataType.values_by_name[
            tensors.FEATURE_DTYPES[feature.dtype]
        ].number
        for _ in range(1 + len(feature.shape)):
            info.tensor_shape.dim.add().size = -1
    for output in servable.predictor.output_names:
        info = signature.outputs[output]
        info.name = output
        info.dtype = tensors.DT_FLOAT
        info.tensor_shape.dim.add().size = -1
        info.tensor_shape.dim.add().size = 1
    return signatures
