"""The vocabulary and statistics scan as an Apache Beam pipeline; scan folders.

`tffm train` scans its training data once, on one core (the streaming
reader parses ~73k rows/s: Criteo-1TB's 4.4 billion rows take 17 hours).
`scan_with_beam` does the same pass on any Beam runner (DirectRunner here;
Flink, Spark or Dataflow for data one machine cannot scan in time; TFX
Transform takes the same route), and writes what `scan_locally` writes,
byte for byte: `vocab/<column>.txt` and `statistics.json`.

Both run the same code on the same rows: each Beam worker reads whole
files with tffm's reader (same parsing, row checks, header and holdout
lines) into a `PartialScan`; value counts are summed per `(column, value)`
across workers (`CombinePerKey`), numeric moments merged exactly (integer
sums, `tffm.data.vocab.Moments`), so neither the split into files and
workers nor the merge order changes a bit; the vocabulary is chosen by
`choose_vocabulary` and written by `write_scan`. Parallelism is per file:
split a large dataset into many files (Criteo-1TB ships as 24 days; split
them further, e.g. `split -l`, for more workers).

Run it (the `[beam]` extra: `pip install 'tffm-keras[beam]'`)::

    python -m tffm.data.beam_scan --config config.json --data 'day_*'
        --output scan/ -- --runner DirectRunner --direct_num_workers 2

`--local` runs the local scan instead. Either way the folder also gets
`scan.json`, the settings the scan depends on (`scan_settings`), and is a
scan folder: `tffm train --scan <folder>` (`TrainConfig.scan`) builds its
features from it (`read_scan`) instead of scanning, after checking that
`scan.json` matches its config. `tffm train` writes one too, in its
`--output`, as soon as its own scan is done.
"""

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from tffm import constants
from tffm.config import TrainConfig
from tffm.config import column_kinds
from tffm.config import column_options
from tffm.data.vocab import Moments
from tffm.data.vocab import PartialScan
from tffm.data.vocab import Scan
from tffm.data.vocab import choose_vocabulary
from tffm.data.vocab import finish_scan
from tffm.data.vocab import scan_partial
from tffm.data.vocab import write_scan

SETTINGS = "scan.json"
STATISTICS = "statistics.json"


def scan_locally(config: TrainConfig, output: str) -> Scan:
    """The scan `tffm train` makes, in this process; writes its files."""
    from tffm.data.lines import resolve_files

    part = _scan_files(config, resolve_files(config.data))
    scanned = finish_scan(part, column_kinds(config))
    write_folder(config, scanned, output)
    return scanned


def write_folder(
    config: TrainConfig, scanned: "Scan | FolderScan", output: str
) -> None:
    """Writes `scanned` as a scan folder: vocabularies, statistics, settings."""
    if isinstance(scanned, FolderScan):
        chosen = scanned.vocabularies
    else:
        chosen = vocabularies(config, scanned.counts.items())
    write_scan(scanned, output, chosen)  # type: ignore[arg-type]
    write_settings(config, output)


def scan_for_training(
    config: TrainConfig, output: str | None = None
) -> tuple["Scan | FolderScan", Any]:
    """`tffm train`'s scan of its training rows, and the scan's row log.

    From `config.scan` when set (checked by `read_scan`; the log is then
    None), else one pass over `config.data` (its holdout left out).
    Written to `output` as a scan folder, when given, before any training:
    a later `--scan output` reuses it, even if the training fails.
    """
    from tffm.data.vocab import scan
    from tffm.training import log_columns
    from tffm.training import open_source

    log = None
    scanned: Scan | FolderScan
    if config.scan:
        scanned = read_scan(config.scan, config)
    else:
        holdout = False if not config.validation_data else None
        source = open_source(config, config.data, holdout=holdout)
        scanned = scan(
            source.dataset,
            column_kinds(config),
            log_columns=log_columns(config),
        )
        log = source.log
    if output is not None:
        write_folder(config, scanned, output)
    return scanned, log


def scan_with_beam(
    config: TrainConfig, output: str, *, beam_args: Sequence[str] = ()
) -> None:
    """The same scan as a Beam pipeline; `beam_args` are its options."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from tffm.data.lines import resolve_files

    files = resolve_files(config.data)
    values = config.to_dict()
    kinds = column_kinds(config)
    settings = scan_settings(config)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        parts = (
            p
            | "Files" >> beam.Create(files)
            | "Spread" >> beam.Reshuffle()
            | "Scan" >> beam.Map(_scan_file, values)
        )
        counts = (
            parts
            | "Values" >> beam.FlatMap(_value_counts)
            | "Count" >> beam.CombinePerKey(sum)
            | "ByColumn" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
            | "Group" >> beam.GroupByKey()
            | "Choose" >> beam.FlatMap(_choose, values)
        )
        totals = parts | "Merge" >> beam.CombineGlobally(_merge_totals_fn())
        _ = (
            p
            | "Once" >> beam.Create([None])
            | "Write"
            >> beam.Map(
                _write,
                kinds,
                settings,
                output,
                beam.pvalue.AsSingleton(totals),
                beam.pvalue.AsDict(counts),
            )
        )


class FolderScan:
    """A scan read back from a scan folder (`read_scan`).

    What `tffm.training.build_features` takes from a `Scan`: `rows`,
    `positives`, `numeric` (`{column: (count, mean, std)}`) and each
    vocabulary, as chosen when the folder was written.

    Args:
        statistics: the folder's `statistics.json`, as a dict.
        vocabularies: `{column: values}`, from its `vocab/*.txt`.
    """

    def __init__(
        self, statistics: dict[str, Any], vocabularies: dict[str, list[Any]]
    ) -> None:
        self.rows = int(statistics["rows"])
        self.positives = float(statistics["positives"])
        self.numeric = {
            name: (int(s["count"]), float(s["mean"]), float(s["std"]))
            for name, s in statistics["numeric"].items()
        }
        self.vocabularies = vocabularies

    def vocabulary(
        self,
        column: str,
        *,
        min_frequency: int = 1,
        max_tokens: int | None = None,
    ) -> list[Any]:
        """The column's vocabulary (`read_scan` checked the options)."""
        del min_frequency, max_tokens
        return list(self.vocabularies[column])


def scan_settings(config: TrainConfig) -> dict[str, Any]:
    """What a scan of `config.data` depends on, as `scan.json` keeps it.

    How rows are read (format, label, delimiter, column names, the holdout
    left out) and, per column, its kind and the options that change its
    statistics or vocabulary: `transform`; `hash_bins`, else the effective
    `min_frequency` and `max_tokens`; a list's `max_len` (values past it are
    not read). `data` is the files scanned (a difference only warns: the
    same files may sit elsewhere).
    """
    from tffm.data.lines import resolve_files

    columns: dict[str, dict[str, Any]] = {}
    for name, kind in column_kinds(config).items():
        opts = column_options(config, name)
        column: dict[str, Any] = {"kind": kind}
        if kind == "numeric":
            column["transform"] = opts.get("transform", "identity")
        elif opts.get("hash_bins"):
            column["hash_bins"] = int(opts["hash_bins"])
        else:
            column["min_frequency"] = opts.get(
                "min_frequency", config.min_frequency
            )
            column["max_tokens"] = opts.get("max_tokens", config.max_tokens)
        if kind == "list":
            column["max_len"] = opts.get("max_len", constants.LIST_MAX_LEN)
        columns[name] = column
    use_holdout = not config.validation_data
    return {
        "reading": {
            "format": config.format,
            "label": config.label,
            "fields": config.fields,
            "delimiter": config.delimiter,
            "list_separator": config.list_separator,
            "column_names": config.column_names,
            "holdout_every": config.holdout_every if use_holdout else None,
        },
        "columns": columns,
        "data": resolve_files(config.data),
    }


def write_settings(config: TrainConfig, directory: str) -> None:
    """Writes `scan_settings(config)` to `directory/scan.json`."""
    os.makedirs(directory, exist_ok=True)
    _write_json(os.path.join(directory, SETTINGS), scan_settings(config))


def read_scan(directory: str, config: TrainConfig) -> FolderScan:
    """The scan in `directory`, checked against `config`.

    Raises:
        FileNotFoundError: a file of the folder is missing.
        ValueError: the folder's scan was made with other settings
            (naming its `scan.json` and each difference).
    """
    settings_path = os.path.join(directory, SETTINGS)
    if not os.path.isfile(settings_path):
        raise FileNotFoundError(
            f"{settings_path} is missing: {directory!r} is not a scan "
            "folder (written by `python -m tffm.data.beam_scan` or by "
            "`tffm train` in its --output), or it was written before scans "
            "recorded their settings; scan again."
        )
    with open(settings_path) as f:
        saved = json.load(f)
    wanted = scan_settings(config)
    differences = _differences(saved, wanted)
    if differences:
        raise ValueError(
            f"{settings_path}: the scan does not match this config ("
            + "; ".join(differences)
            + "). Scan again with this config, or train with the scan's."
        )
    if saved.get("data") != wanted["data"]:
        warnings.warn(
            f"{settings_path}: the scan read {saved.get('data')}, this "
            f"config trains on {wanted['data']}.",
            stacklevel=2,
        )
    statistics_path = os.path.join(directory, STATISTICS)
    with open(statistics_path) as f:
        statistics = json.load(f)
    missing = [
        n
        for n, c in wanted["columns"].items()
        if c["kind"] == "numeric" and n not in statistics["numeric"]
    ]
    if missing:
        raise ValueError(f"{statistics_path} has no statistics of {missing}.")
    kinds = column_kinds(config)
    vocab = {}
    for name, column in wanted["columns"].items():
        if column["kind"] == "numeric" or "hash_bins" in column:
            continue
        path = os.path.join(directory, "vocab", f"{name}.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing (column {name!r}).")
        with open(path, encoding="utf-8", newline="") as f:
            values = f.read().split("\n")[:-1]  # one value a line
        vocab[name] = (
            [int(v) for v in values] if kinds[name] == "integer" else values
        )
    return FolderScan(statistics, vocab)


def vocabularies(config: TrainConfig, counts: Any) -> dict[str, list[Any]]:
    """`{column: vocabulary}` for the vocabulary columns among `counts`.

    Args:
        config: the `TrainConfig` (per-column `min_frequency`,
            `max_tokens`, `hash_bins`, as `tffm.training.build_features`
            reads them).
        counts: `(column, [(value, count), ...])` pairs (or a Counter's
            items).
    """
    out = {}
    for name, items in counts:
        opts = column_options(config, name)
        if opts.get("hash_bins"):
            continue  # hashed: no vocabulary
        out[name] = choose_vocabulary(
            items.items() if hasattr(items, "items") else items,
            min_frequency=opts.get("min_frequency", config.min_frequency),
            max_tokens=opts.get("max_tokens", config.max_tokens),
        )
    return out


def _scan_files(config: TrainConfig, files: list[str]) -> PartialScan:
    """One worker's pass over `files`, as `tffm train` reads them."""
    from tffm.training import log_columns
    from tffm.training import open_source

    use_holdout = not config.validation_data
    source = open_source(config, files, holdout=False if use_holdout else None)
    return scan_partial(
        source.dataset, column_kinds(config), log_columns=log_columns(config)
    )


def _choose(column: tuple[str, Any], values: dict[str, Any]) -> Any:
    """`(name, vocabulary)` of one column (none for hashed columns)."""
    yield from vocabularies(TrainConfig.from_dict(values), [column]).items()


def _scan_file(path: str, values: dict[str, Any]) -> PartialScan:
    return _scan_files(TrainConfig.from_dict(values), [path])


def _value_counts(part: PartialScan) -> Any:
    for name, counter in part.counts.items():
        for value, n in counter.items():
            yield (name, value), n


def _merge_totals(parts: Any) -> PartialScan:
    """Rows, labels and numeric moments of `parts`, merged into a new one."""
    merged = PartialScan(0, Moments(), {}, {})
    for part in parts:
        merged.rows += part.rows
        merged.labels.merge(part.labels)
        for name, acc in part.moments.items():
            merged.moments.setdefault(name, Moments()).merge(acc)
    return merged


def _write(
    _: Any,
    kinds: dict[str, str],
    settings: dict[str, Any],
    output: str,
    totals: PartialScan,
    counts: dict[str, list[Any]],
) -> None:
    scanned = finish_scan(totals, kinds)
    ordered = {name: counts.get(name, []) for name in kinds if name in counts}
    write_scan(scanned, output, ordered)
    _write_json(os.path.join(output, SETTINGS), settings)


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between a folder's `scan.json` and this config's."""
    out = []
    for key, value in wanted["reading"].items():
        was = saved.get("reading", {}).get(key)
        if was != value:
            out.append(f"{key}: {was!r} in the scan, {value!r} here")
    columns = saved.get("columns", {})
    for name in sorted(set(columns) - set(wanted["columns"])):
        out.append(f"column {name!r} was scanned, this config has none")
    for name, column in wanted["columns"].items():
        if name not in columns:
            out.append(f"column {name!r} is not in the scan")
            continue
        for key in sorted(set(column) | set(columns[name])):
            was, now = columns[name].get(key), column.get(key)
            if was != now:
                out.append(
                    f"column {name!r}: {key} {was!r} in the scan, {now!r} here"
                )
    return out


def _write_json(path: str, value: Any) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def _merge_totals_fn() -> Any:
    """A `beam.CombineFn` of `_merge_totals` (Beam imported lazily)."""
    import apache_beam as beam

    class MergeTotals(beam.CombineFn):  # type: ignore[misc]
        def create_accumulator(self) -> PartialScan:
            return PartialScan(0, Moments(), {}, {})

        def add_input(self, acc: PartialScan, part: PartialScan) -> Any:
            return _merge_totals([acc, part])

        def merge_accumulators(self, accs: Any) -> PartialScan:
            return _merge_totals(accs)

        def extract_output(self, acc: PartialScan) -> PartialScan:
            return acc

    return MergeTotals()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tffm.data.beam_scan`: the scan on Beam (or `--local`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, beam_args = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m tffm.data.beam_scan", description=__doc__
    )
    parser.add_argument("--config", required=True, help="JSON / TOML config")
    parser.add_argument("--data", nargs="+", help="files or globs")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument(
        "--local", action="store_true", help="scan in this process"
    )
    args = parser.parse_args(argv)
    config = TrainConfig.from_file(args.config, data=args.data)
    if args.local:
        scan_locally(config, args.output)
    else:
        scan_with_beam(config, args.output, beam_args=beam_args)
    print(f"Wrote {args.output}/vocab/*.txt and statistics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
