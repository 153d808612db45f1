"""The vocabulary and statistics scan as an Apache Beam pipeline.

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

`--local` runs the local scan instead; `tffm train` reads neither (it
scans by itself), the files are for inspection and for other tools.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import Any

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


def scan_locally(config: TrainConfig, output: str) -> Scan:
    """The scan `tffm train` makes, in this process; writes its files."""
    from tffm.data.lines import resolve_files

    part = _scan_files(config, resolve_files(config.data))
    scanned = finish_scan(part, column_kinds(config))
    write_scan(scanned, output, vocabularies(config, scanned.counts.items()))
    return scanned


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
                output,
                beam.pvalue.AsSingleton(totals),
                beam.pvalue.AsDict(counts),
            )
        )


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
    output: str,
    totals: PartialScan,
    counts: dict[str, list[Any]],
) -> None:
    scanned = finish_scan(totals, kinds)
    ordered = {name: counts.get(name, []) for name in kinds if name in counts}
    write_scan(scanned, output, ordered)


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
