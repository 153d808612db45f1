"""TF Serving's text-format config files: models, batching, TLS, monitoring.

TF Serving reads `ModelServerConfig` (`--model_config_file`),
`BatchingParameters` (`--batching_parameters_file`), `SSLConfig`
(`--ssl_config_file`) and `MonitoringConfig` (`--monitoring_config_file`)
as protobuf text format.
This module parses that format itself (no protobuf text_format or TF
Serving protos needed) into the few settings `tffm serve` uses:

```
model_config_list {
  config {
    name: "ctr"
    base_path: "/models/ctr"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
  }
}
```

Version policies as TF Serving's: `latest { num_versions: N }` (default,
N = 1), `all {}`, `specific { versions: ... }`. Unknown fields are errors
that name the field and line, so a typo does not pass silently.
"""

import dataclasses
import os
import re
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+)[fF]?)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<punct>[{}<>:;,\[\]])
    )""",
    re.VERBOSE,
)
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One `config { ... }` entry of a `models.config` file.

    Args:
        name: str. Model name in URLs and `ModelSpec.name`.
        base_path: str. Directory holding numbered version directories.
        policy: str. `"latest"`, `"all"` or `"specific"`.
        num_versions: int. How many latest versions (`policy="latest"`).
        versions: tuple of int. Versions served (`policy="specific"`).
        labels: dict `{label: version}`.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = dataclasses.field(default_factory=dict)

    def wanted(self, available: list[int]) -> list[int]:
        """The versions to serve among those on disk, per the policy."""
        if self.policy == "all":
            return sorted(available)
        if self.policy == "specific":
            return sorted(v for v in available if v in self.versions)
        return sorted(available)[-self.num_versions :]


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `BatchingParameters` (defaults as TF Serving's).

    Args:
        max_batch_size: int. Rows in one batch; a request with more rows
            is refused.
        batch_timeout_micros: int. How long a batch waits to fill.
        max_enqueued_batches: int. Queue capacity in batches; beyond it
            requests are refused at once (UNAVAILABLE), never held.
        num_batch_threads: int. Batches run concurrently.
        allowed_batch_sizes: tuple of int. Batches are padded up to the
            next of these sizes (empty: no padding).
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(
        default_factory=lambda: os.cpu_count() or 1
    )
    allowed_batch_sizes: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class SslConfig:
    """TF Serving's `SSLConfig`: TLS for the gRPC port.

    Args:
        server_key: str. The server's private key, PEM text.
        server_cert: str. The server's certificate (chain), PEM text.
        custom_ca: str. PEM certificates that client certificates are
            checked against (empty: none).
        client_verify: bool. Require a client certificate signed by
            `custom_ca`.
    """

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False


def read_ssl_config(path: str) -> SslConfig:
    """Reads a TF Serving `--ssl_config_file` (`SSLConfig` text).

    The keys and certificates are the PEM text itself, as TF Serving reads
    them: `server_key: "-----BEGIN PRIVATE KEY-----` then the lines joined
    by the escape for a newline.
    """
    with open(path) as f:
        root = parse_text_proto(f.read(), path)
    fields = {"server_key", "server_cert", "custom_ca", "client_verify"}
    _only(root, fields, path, "SSLConfig")
    values = {name: _scalar(root, name, path) for name in fields}
    for name in ("server_key", "server_cert", "custom_ca"):
        if values[name] is None:
            values[name] = ""
        if not isinstance(values[name], str):
            raise ValueError(f"{path}: `{name}` must be a string.")
    for name in ("server_key", "server_cert"):
        if "-----BEGIN" not in values[name]:
            raise ValueError(
                f"{path}: `{name}` must hold the PEM text (-----BEGIN ...)."
            )
    verify = values["client_verify"]
    if verify not in (None, "true", "false", True, False, 0, 1):
        raise ValueError(
            f"{path}: `client_verify` must be true or false. "
            f"Received: {verify!r}"
        )
    values["client_verify"] = verify in ("true", True, 1)
    if values["client_verify"] and not values["custom_ca"]:
        raise ValueError(
            f"{path}: `client_verify: true` needs `custom_ca`, the "
            "certificates client certificates are checked against."
        )
    return SslConfig(**values)


def read_monitoring_config(path: str) -> str | None:
    """Reads a TF Serving `--monitoring_config_file` (`MonitoringConfig`).

    Returns:
        The Prometheus metrics path (`prometheus_config { enable: true
        path: "..." }`; default `/monitoring/prometheus/metrics`), or None
        when Prometheus is not enabled.
    """
    with open(path) as f:
        root = parse_text_proto(f.read(), path)
    _only(root, {"prometheus_config"}, path, "MonitoringConfig")
    configs = root.get("prometheus_config", [{}])
    if len(configs) != 1:
        raise ValueError(f"{path}: `prometheus_config` appears twice.")
    config = configs[0]
    _only(config, {"enable", "path"}, path, "PrometheusConfig")
    enable = _scalar(config, "enable", path)
    if enable not in (None, "true", "false", True, False, 0, 1):
        raise ValueError(
            f"{path}: `enable` must be true or false. Received: {enable!r}"
        )
    if enable not in ("true", True, 1):
        return None
    metrics_path = _scalar(config, "path", path) or PROMETHEUS_PATH
    if not isinstance(metrics_path, str) or not metrics_path.startswith("/"):
        raise ValueError(
            f"{path}: `path` must start with '/'. Received: {metrics_path!r}"
        )
    return metrics_path


def parse_text_proto(text: str, source: str = "<text>") -> dict[str, Any]:
    """Parses protobuf text format into `{field: [values]}` (nested dicts).

    Every field maps to a list (text format does not say which fields are
    repeated). Scalars are `str` (strings and enum names) or numbers.

    Raises:
        ValueError: naming `source` and the line of the problem.
    """
    tokens = _tokenize(text, source)
    result, position = _parse_message(tokens, 0, source, closing=None)
    return result


def read_model_config(path: str) -> list[ModelConfig]:
    """Reads a TF Serving `models.config` (`ModelServerConfig`) file."""
    with open(path) as f:
        text = f.read()
    base = os.path.dirname(os.path.abspath(path))
    return parse_model_config(text, path, base)


def parse_model_config(
    text: str, source: str, base_dir: str
) -> list[ModelConfig]:
    """`ModelServerConfig` text -> `ModelConfig`s, base paths from `base_dir`.

    Raises:
        ValueError: naming `source` and what is wrong.
    """
    path = source
    root = parse_text_proto(text, path)
    _only(root, {"model_config_list"}, path, "ModelServerConfig")
    lists = root.get("model_config_list", [])
    if len(lists) != 1:
        raise ValueError(
            f"{path}: expected one `model_config_list {{ ... }}`; "
            "`custom_model_config` is not supported by `tffm serve`."
        )
    _only(lists[0], {"config"}, path, "ModelConfigList")
    configs = [_model_config(c, path) for c in lists[0].get("config", [])]
    if not configs:
        raise ValueError(f"{path}: `model_config_list` has no `config`.")
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: model names appear twice: {names}")
    return [
        dataclasses.replace(c, base_path=os.path.join(base_dir, c.base_path))
        for c in configs
    ]


def read_batching_parameters(path: str | None) -> BatchingParameters:
    """Reads `--batching_parameters_file` (defaults when `path` is None)."""
    if path is None:
        return BatchingParameters()
    with open(path) as f:
        root = parse_text_proto(f.read(), path)
    wrapped = {
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
    }
    ignored = {
        "thread_pool_name",
        "pad_variable_length_inputs",
        "enable_large_batch_splitting",
        "max_execution_batch_size",
    }
    _only(root, wrapped | ignored | {"allowed_batch_sizes"}, path, "batching")
    values: dict[str, Any] = {}
    for name in wrapped:
        if name in root:
            value = _scalar(root, name, path, wrapper=True)
            if not isinstance(value, int) or value < (
                0 if name == "batch_timeout_micros" else 1
            ):
                raise ValueError(
                    f"{path}: `{name}` must be a positive integer. "
                    f"Received: {value!r}"
                )
            values[name] = value
    sizes = tuple(root.get("allowed_batch_sizes", []))
    if sizes:
        if any(not isinstance(s, int) or s < 1 for s in sizes) or list(
            sizes
        ) != sorted(set(sizes)):
            raise ValueError(
                f"{path}: `allowed_batch_sizes` must be increasing positive "
                f"integers. Received: {list(sizes)}"
            )
        limit = values.get("max_batch_size", BatchingParameters.max_batch_size)
        if sizes[-1] != limit:
            raise ValueError(
                f"{path}: the last `allowed_batch_sizes` entry must equal "
                f"`max_batch_size` ({limit}). Received: {list(sizes)}"
            )
        values["allowed_batch_sizes"] = sizes
    return BatchingParameters(**values)


def _model_config(node: dict[str, Any], path: str) -> ModelConfig:
    known = {
        "name",
        "base_path",
        "model_platform",
        "model_type",
        "model_version_policy",
        "version_labels",
        "logging_config",
    }
    _only(node, known, path, "ModelConfig")
    name = _scalar(node, "name", path)
    base_path = _scalar(node, "base_path", path)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: every `config` needs a `name`.")
    if not isinstance(base_path, str) or not base_path:
        raise ValueError(f"{path}: model {name!r} needs a `base_path`.")
    platform = node.get("model_platform", ["tensorflow"])[0]
    if platform not in ("tensorflow", "onnx"):
        raise ValueError(
            f"{path}: model {name!r}: `model_platform` must be 'tensorflow' "
            f"or 'onnx'. Received: {platform!r}"
        )
    kwargs: dict[str, Any] = {}
    for policy_node in node.get("model_version_policy", []):
        _only(policy_node, {"latest", "all", "specific"}, path, "policy")
        if len(policy_node) != 1:
            raise ValueError(
                f"{path}: model {name!r}: `model_version_policy` needs "
                "exactly one of `latest`, `all`, `specific`."
            )
        (policy, [body]) = next(iter(policy_node.items()))
        kwargs["policy"] = policy
        if policy == "latest":
            _only(body, {"num_versions"}, path, "latest")
            kwargs["num_versions"] = body.get("num_versions", [1])[0]
            if not isinstance(kwargs["num_versions"], int) or (
                kwargs["num_versions"] < 1
            ):
                raise ValueError(
                    f"{path}: model {name!r}: `num_versions` must be a "
                    f"positive integer. Received: {kwargs['num_versions']!r}"
                )
        elif policy == "specific":
            _only(body, {"versions"}, path, "specific")
            versions = body.get("versions", [])
            if not versions or any(not isinstance(v, int) for v in versions):
                raise ValueError(
                    f"{path}: model {name!r}: `specific` needs integer "
                    f"`versions`. Received: {versions!r}"
                )
            kwargs["versions"] = tuple(versions)
        else:
            _only(body, set(), path, "all")
    labels = {}
    for entry in node.get("version_labels", []):
        _only(entry, {"key", "value"}, path, "version_labels")
        key, value = _scalar(entry, "key", path), _scalar(entry, "value", path)
        if not isinstance(key, str) or not isinstance(value, int):
            raise ValueError(
                f"{path}: model {name!r}: `version_labels` needs a string "
                f"`key` and an integer `value`. Received: {entry!r}"
            )
        labels[key] = value
    return ModelConfig(name, base_path, labels=labels, **kwargs)


def _only(
    node: dict[str, Any], allowed: set[str], path: str, what: str
) -> None:
    unknown = sorted(set(node) - allowed)
    if unknown:
        raise ValueError(
            f"{path}: unknown field(s) {unknown} in {what}. "
            f"Expected some of {sorted(allowed)}."
        )


def _scalar(
    node: dict[str, Any], name: str, path: str, *, wrapper: bool = False
) -> Any:
    values = node.get(name, [None])
    if len(values) != 1:
        raise ValueError(f"{path}: `{name}` appears {len(values)} times.")
    value = values[0]
    if wrapper and isinstance(value, dict):  # google.protobuf.Int64Value
        _only(value, {"value"}, path, name)
        value = value.get("value", [0])[0]
    return value


def _tokenize(text: str, source: str) -> list[tuple[str, Any, int]]:
    tokens: list[tuple[str, Any, int]] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        line = text.count("\n", 0, position) + 1
        if match is None or match.end() == position:
            bad = text[position:].strip()[:20]
            raise ValueError(f"{source}:{line}: cannot parse {bad!r}")
        kind, value = match.lastgroup, match.group(match.lastgroup or 0)
        line = text.count("\n", 0, match.start(kind or 0)) + 1
        if kind == "string":
            tokens.append(("value", _unquote(value), line))
        elif kind == "number":
            number = value.rstrip("fF")
            parsed = (
                int(number)
                if re.fullmatch(r"[-+]?\d+", number)
                else float(number)
            )
            tokens.append(("value", parsed, line))
        elif kind in ("ident", "punct"):
            tokens.append((kind, value, line))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    out = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _parse_message(
    tokens: list[tuple[str, Any, int]],
    position: int,
    source: str,
    closing: str | None,
) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while position < len(tokens):
        kind, value, line = tokens[position]
        if kind == "punct" and value == closing:
            return result, position + 1
        if kind == "punct" and value in ";,":
            position += 1
            continue
        if kind != "ident":
            raise ValueError(
                f"{source}:{line}: expected a field name, got {value!r}"
            )
        name = value
        position += 1
        if position < len(tokens) and tokens[position][1] == ":":
            position += 1
        if position >= len(tokens):
            raise ValueError(f"{source}:{line}: `{name}` has no value")
        kind, value, line = tokens[position]
        if kind == "punct" and value in "{<":
            nested, position = _parse_message(
                tokens, position + 1, source, "}" if value == "{" else ">"
            )
            result.setdefault(name, []).append(nested)
        elif kind == "punct" and value == "[":  # repeated scalars: [1, 2]
            position += 1
            while tokens[position][1] != "]":
                if tokens[position][1] != ",":
                    result.setdefault(name, []).append(tokens[position][1])
                position += 1
            position += 1
        elif kind in ("value", "ident"):
            if kind == "ident" and value in ("true", "false"):
                value = value == "true"
            result.setdefault(name, []).append(value)
            position += 1
        else:
            raise ValueError(
                f"{source}:{line}: unexpected {value!r} after `{name}`"
            )
    if closing is not None:
        raise ValueError(f"{source}: missing {closing!r} at the end")
    return result, position
