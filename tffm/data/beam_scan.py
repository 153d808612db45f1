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

Run it with `tffm scan` (the `[beam]` extra: `pip install
'tffm-keras[beam]'`)::

    tffm scan --config config.json --data 'day_*' --output scan/ \
        -- --runner DirectRunner --direct_num_workers 2

`--local` runs the local scan instead. Either way the folder also gets
`scan.json`, the settings the scan depends on (`scan_settings`), and is a
scan folder: `tffm train --scan <folder>` (`TrainConfig.scan`) builds its
features from it (`read_scan`) instead of scanning, after checking that
`scan.json` matches its layout. `tffm train` writes one too, in its
`--output`, as soon as its own scan is done.

Every function here takes the `DataLayout` the files are read by and the
files themselves (globs resolved here).
"""

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

from tffm.data.layout import DataLayout
from tffm.data.lines import resolve_files
from tffm.data.source import open_source
from tffm.data.vocab import Moments
from tffm.data.vocab import PartialScan
from tffm.data.vocab import Scan
from tffm.data.vocab import choose_vocabulary
from tffm.data.vocab import finish_scan
from tffm.data.vocab import scan
from tffm.data.vocab import scan_partial
from tffm.data.vocab import write_scan

SETTINGS = "scan.json"
STATISTICS = "statistics.json"


# Rows per batch of a scan's reader (any size gives the same scan).
SCAN_BATCH = 1024


def scan_locally(layout: DataLayout, files: Sequence[str], output: str) -> Scan:
    """The scan `tffm train` makes, in this process; writes its files."""
    part = _scan_files(layout, resolve_files(list(files)))
    scanned = finish_scan(part, layout.kinds())
    write_folder(layout, files, scanned, output)
    return scanned


def write_folder(
    layout: DataLayout,
    files: Sequence[str],
    scanned: "Scan | FolderScan",
    output: str,
) -> None:
    """Writes `scanned` as a scan folder: vocabularies, statistics, settings."""
    if isinstance(scanned, FolderScan):
        chosen = scanned.vocabularies
    else:
        chosen = vocabularies(layout, scanned.counts.items())
    write_scan(scanned, output, chosen)  # type: ignore[arg-type]
    write_settings(layout, files, output)


def scan_for_training(
    layout: DataLayout,
    files: Sequence[str],
    *,
    folder: str | None = None,
    output: str | None = None,
) -> tuple["Scan | FolderScan", Any]:
    """`tffm train`'s scan of its training rows, and the scan's row log.

    Read from the scan folder `folder` when given (checked by `read_scan`;
    the log is then None), else one pass over `files` (their holdout left
    out). Written to `output` as a scan folder, when given, before any
    training: a later `--scan output` reuses it, even if the training fails.
    """
    log = None
    scanned: Scan | FolderScan
    if folder:
        scanned = read_scan(folder, layout, files)
    else:
        source = open_source(
            layout,
            files,
            batch_size=SCAN_BATCH,
            holdout=None if layout.holdout_every is None else False,
        )
        scanned = scan(
            source.dataset, layout.kinds(), log_columns=layout.log_columns()
        )
        log = source.log
    if output is not None:
        write_folder(layout, files, scanned, output)
    return scanned, log


def scan_with_beam(
    layout: DataLayout,
    files: Sequence[str],
    output: str,
    *,
    beam_args: Sequence[str] = (),
) -> None:
    """The same scan as a Beam pipeline; `beam_args` are its options."""
    import apache_beam as beam  # optional: the `[beam]` extra
    from apache_beam.options.pipeline_options import PipelineOptions

    resolved = resolve_files(list(files))
    values = layout.to_dict()
    kinds = layout.kinds()
    settings = scan_settings(layout, resolved)
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        parts = (
            p
            | "Files" >> beam.Create(resolved)
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

    What `tffm.train.build.build_features` takes from a `Scan`: `rows`,
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


def scan_settings(layout: DataLayout, files: Sequence[str]) -> dict[str, Any]:
    """What a scan of `files` depends on, as `scan.json` keeps it.

    How rows are read (format, label, delimiter, column names, the holdout
    left out) and, per column, its kind and the options that change its
    statistics or vocabulary: `transform`; `hash_bins`, else the effective
    `min_frequency` and `max_tokens`; a list's `max_len` (values past it are
    not read). `data` is the files scanned (a difference only warns: the
    same files may sit elsewhere).
    """
    max_lens = layout.max_lens()
    columns: dict[str, dict[str, Any]] = {}
    for name, kind in layout.kinds().items():
        opts = layout.column_options(name)
        column: dict[str, Any] = {"kind": kind}
        if kind == "numeric":
            column["transform"] = opts.get("transform", "identity")
        elif opts.get("hash_bins"):
            column["hash_bins"] = int(opts["hash_bins"])
        else:
            column.update(layout.vocabulary_options(name))
        if kind == "list":
            column["max_len"] = max_lens[name]
        columns[name] = column
    return {
        "reading": {
            "format": layout.format,
            "label": layout.label,
            "fields": _listed(layout.fields),
            "delimiter": layout.delimiter,
            "list_separator": layout.list_separator,
            "column_names": _listed(layout.column_names),
            "holdout_every": layout.holdout_every,
        },
        "columns": columns,
        "data": resolve_files(list(files)),
    }


def write_settings(
    layout: DataLayout, files: Sequence[str], directory: str
) -> None:
    """Writes `scan_settings(layout, files)` to `directory/scan.json`."""
    os.makedirs(directory, exist_ok=True)
    _write_json(os.path.join(directory, SETTINGS), scan_settings(layout, files))


def read_scan(
    directory: str, layout: DataLayout, files: Sequence[str]
) -> FolderScan:
    """The scan in `directory`, checked against `layout` and `files`.

    Raises:
        FileNotFoundError: a file of the folder is missing.
        ValueError: the folder's scan was made with other settings
            (naming its `scan.json` and each difference).
    """
    settings_path = os.path.join(directory, SETTINGS)
    if not os.path.isfile(settings_path):
        raise FileNotFoundError(
            f"{settings_path} is missing: {directory!r} is not a scan "
            "folder (written by `tffm scan` or by "
            "`tffm train` in its --output), or it was written before scans "
            "recorded their settings; scan again."
        )
    with open(settings_path) as f:
        saved = json.load(f)
    wanted = scan_settings(layout, files)
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
            f"run reads {wanted['data']}.",
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
    kinds = layout.kinds()
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


def vocabularies(layout: DataLayout, counts: Any) -> dict[str, list[Any]]:
    """`{column: vocabulary}` for the vocabulary columns among `counts`.

    Args:
        layout: the `DataLayout` (per-column `min_frequency`, `max_tokens`,
            `hash_bins`, as `tffm.train.build_features` reads them).
        counts: `(column, [(value, count), ...])` pairs (or a Counter's
            items).
    """
    out = {}
    for name, items in counts:
        if layout.column_options(name).get("hash_bins"):
            continue  # hashed: no vocabulary
        out[name] = choose_vocabulary(
            items.items() if hasattr(items, "items") else items,
            **layout.vocabulary_options(name),
        )
    return out


def _scan_files(layout: DataLayout, files: list[str]) -> PartialScan:
    """One worker's pass over `files`, as `tffm train` reads them."""
    source = open_source(
        layout,
        files,
        batch_size=SCAN_BATCH,
        holdout=None if layout.holdout_every is None else False,
    )
    return scan_partial(
        source.dataset, layout.kinds(), log_columns=layout.log_columns()
    )


def _choose(column: tuple[str, Any], values: dict[str, Any]) -> Any:
    """`(name, vocabulary)` of one column (none for hashed columns)."""
    yield from vocabularies(DataLayout.from_dict(values), [column]).items()


def _scan_file(path: str, values: dict[str, Any]) -> PartialScan:
    return _scan_files(DataLayout.from_dict(values), [path])


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
    import apache_beam as beam  # optional: the [beam] extra

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


def _listed(values: Sequence[str] | None) -> list[str] | None:
    return None if values is None else list(values)
