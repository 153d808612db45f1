"""Names and choices shared by the library, the artifacts and the CLI.

Plain Python (no numpy, no Keras): `serving` reads the artifact names from
here on machines without TensorFlow.
"""

# === Tasks, models and data formats ===
TASKS = ("binary", "regression")
MODELS = ("deepfm", "fm", "lr")
FORMATS = ("criteo", "libsvm", "csv", "parquet", "encoded")
# Column kinds the readers parse: float32 (NaN = missing), string ("" =
# missing), int64 (-1 = missing), padded string lists ("" = padding).
COLUMN_KINDS = ("numeric", "categorical", "integer", "list")
# Values a list column keeps unless told (`MultiCategorical.max_len`).
LIST_MAX_LEN = 16
# Where `tffm train` runs (`tffm.train.distribute`): one device, a
# `tf.distribute` strategy (TensorFlow backend) or a `keras.distribution`
# (JAX backend); and how a batch and learning rate scale with replicas.
DISTRIBUTIONS = (
    "none",
    "mirrored",
    "multi-worker",
    "parameter-server",
    "data-parallel",
    "model-parallel",
)
BATCH_SCALING = ("global", "linear", "sqrt")
# Tables with at least this many rows are updated row-wise by default
# (`tffm.optimizers`); smaller ones take the optimizer's dense update.
LAZY_ROWS = 1_000_000
CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
CRITEO_KINDS = {
    **{name: "numeric" for name in CRITEO_NUMERIC},
    **{name: "categorical" for name in CRITEO_CATEGORICAL},
}

# === Outputs (the same names in Keras, SavedModel, ONNX and over REST) ===
LOGIT = "logit"
PROBABILITY = "probability"  # task="binary"
PREDICTION = "prediction"  # task="regression"
HEAD = {"binary": PROBABILITY, "regression": PREDICTION}

# Rows per batch when `tffm evaluate` and `tffm predict` read files.
SCORING_BATCH_SIZE = 1024

# === Tuning ===
# `tffm tune`'s search algorithms (KerasTuner's), the first the default.
TUNE_ALGORITHMS = ("bayesian", "random", "hyperband")
TUNE_MAX_TRIALS = 20

# === Artifacts ===
SIGNATURE_NAME = "serving_default"
# Beside a SavedModel: the feature spec (JSON) and TF Serving warmup records.
FEATURES_FILE = "assets.extra/tffm_features.json"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
# ONNX `metadata_props` keys.
ONNX_FEATURES = "tffm.features"  # the spec, `tffm.features.features_to_json`
ONNX_HASH = "tffm.hash"
ONNX_VERSION = "tffm.model_version"
ONNX_OUTPUTS = "tffm.outputs"
ONNX_INPUTS = "tffm.inputs"  # "raw" or "ids"
ONNX_PRECISION = "tffm.precision"
# The string hash of hashed features: TensorFlow's `to_hash_bucket_fast`.
HASH_NAME = "farmhash.fingerprint64"
DEFAULT_OPSET = 17
# The raw-input ONNX in a version directory (`<base>/<version>/model.onnx`),
# beside the SavedModel: what `tffm serve` loads.
ONNX_MODEL_FILE = "model.onnx"
# A model too large for one protobuf keeps its tensors in `<file>.data`
# beside the `.onnx` file (ONNX external data); the two travel together.
ONNX_DATA_SUFFIX = ".data"

# === Parity ===
# (atol, rtol): float32 ONNX Runtime / SavedModel vs Keras.
PARITY_TOLERANCE = (1e-5, 1e-5)
PARITY_BATCH_SIZES = (1, 64, 10_000)
