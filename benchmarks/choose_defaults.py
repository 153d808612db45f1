"""How the defaults by task and model (`AUTO_DEFAULTS`) were chosen.

For each (task, model), a small grid of candidates around the current
defaults is trained on the TRAINING part of several data sets and scored on
their holdout (every 10th line of the training file, or the data set's own
validation file); no test file is read. Per data set a candidate's regret is
how far its holdout metric is from the best candidate's there (AUC below the
best, or RMSE above it); the chosen candidate has the smallest worst-case
regret across the data sets (ties: the smaller mean regret), so a default is
never far from the best choice anywhere, rather than best on average and
poor on one data set.

Binary data sets: Frappe (the NFM validation file), the Criteo and Avazu
samples, and 200,000 planted-FM rows (`tffm.synthetic`, the demo's
generator: the large-data case, where regularization fit for small data
sets costs accuracy). Regression: MovieLens-100K u1.base with user and
item side fields (the one regression set here with categorical fields).

Usage: python benchmarks/choose_defaults.py [--only binary/fm,...]
    [--seeds 0,1,2] [--grid JSON] [--nested | --folds K]
    [--sets frappe,...] [--no-record]
With several seeds a candidate's holdout metric is the mean over them (the
Criteo and Avazu holdouts are about 400 rows each, where one seed's best
epoch moves the AUC by 0.02). `--grid` replaces the candidates of the one
`--only` entry, e.g. '[{}, {"learning_rate": 0.003}]'. `--nested` scores
one holdout level down, for candidates whose model trains on its own
holdout (`refit`): each trains on the training data less a holdout of its
own and is scored on the holdout above (the validation file, or the
carved holdout's lines). `--folds K` scores each candidate out of fold
instead: the training file's lines are dealt into K folds (line i to fold
i mod K); each fold's model trains on the other folds, stops early on the
data set's validation file (or a holdout carved from those folds) and
scores the fold it never saw; the metric is the mean over folds and
seeds. On the Criteo and Avazu samples that scores all ~7,000 training
rows instead of ~400 validation rows, and it suits candidates that refit.
Prints one table per (task, model) and writes them to RESULTS.md.

`--sizes 5000,20000,full` runs the size sweep instead (`size_sweep`): each
data set's training rows are subsampled (a seeded draw of lines) to each
size, while the holdout stays the same rows at every size (the validation
file, or for Frappe the every-10th-line holdout carved once); each
candidate of `SIZE_GRID` (or `--grid`) is scored there beside the linear
model `tffm train` fits alongside (`tffm.train.linear_guard`). Each run
goes to `--log` (JSON lines) as it ends.
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import real_data
from results import record_section

from tffm.train.config import TrainConfig
from tffm.train.defaults import AUTO_DEFAULTS
from tffm.train.evaluation import evaluate_files
from tffm.train.inputs import resolve_layout
from tffm.train.pipeline import train

HERE = os.path.dirname(os.path.abspath(__file__))

# Candidates: changes to the current defaults (`{}` is the defaults). The
# 2026-12-05 grids that chose today's defaults are in RESULTS.md; these
# put the alternatives beside them.
GRIDS = {
    ("binary", "deepfm"): [
        {},
        {"ema": 0.0},
        {"min_frequency": 3},
        {"table_l2": 0.0},
    ],
    ("binary", "fm"): [
        {},
        {"learning_rate": 1e-2},
        {"learning_rate": 3e-3},
        {"min_frequency": 1},
        {"min_frequency": 2},
        {"table_l2": 1e-4},
    ],
    ("binary", "lr"): [{}, {"min_frequency": 3}],
    ("regression", "fm"): [
        {},
        {"ema": 0.0, "embedding_dim": 32, "epochs": 40},
        {"min_frequency": 3},
    ],
    ("regression", "deepfm"): [
        {},
        {"embeddings_l2": 0.03},
        {"dropout": 0.2},
    ],
    ("regression", "lr"): [{}, {"learning_rate": 3e-3}],
}
BINARY_SETS = ("frappe", "criteo", "avazu", "planted")
# The size sweep's candidates, per model (`{}`: today's defaults, whose
# `ema` goes by the steps per epoch); `ema_epochs` E sets `ema` to
# `1 - 1 / (E * steps per epoch)` (an average over about E epochs).
SIZE_GRID = {
    "deepfm": [
        {"ema": 0.995},
        {},
        {"min_frequency": 3},
    ],
    "fm": [{}],
}
REGRESSION_SETS = ("movielens",)


def planted(tmp, rows=200_000):
    """The demo's planted-FM generator: train and validation CSV files."""
    from tffm.synthetic import make_planted_ctr

    data = make_planted_ctr(rows, num_categorical=6, vocabulary_size=30, seed=1)
    train_part, valid_part = data.split(0.9)
    paths = {
        name: part.to_csv(os.path.join(tmp, f"planted_{name}.csv"))
        for name, part in (("train", train_part), ("valid", valid_part))
    }
    return dict(
        data=[paths["train"]],
        validation_data=[paths["valid"]],
        format="csv",
        columns=data.csv_columns(),
        label="label",
    )


def sized(name, size, tmp, seed=0):
    """Data set `name` with `size` training rows and a fixed holdout.

    `size` None: every training row. The holdout is the validation file,
    or (Frappe) the every-10th-line holdout written apart once.
    """
    key = os.path.join(tmp, f"sized-{name}")
    if name == "planted":
        base = planted(tmp, rows=110_000)
    else:
        base = reading(name, tmp)
        if not base.get("validation_data"):
            base, holdout = nested(base, tmp, name)
            base = dict(base, validation_data=holdout)
    if size is None:
        return base
    (path,) = base["data"]
    header = base["format"] == "csv"
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        lines = f.readlines()
    first, lines = (lines[:1], lines[1:]) if header else ([], lines)
    if size >= len(lines):
        return base
    keep = np.sort(np.random.default_rng(seed).permutation(len(lines))[:size])
    out = f"{key}-{size}.txt"
    with open(out, "w") as f:
        f.writelines(first + [lines[i] for i in keep])
    return dict(base, data=[out])


def count_rows(base):
    (path,) = base["data"]
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = sum(1 for _ in f)
    return rows - (base["format"] == "csv")


def size_sweep(models, sets, sizes, grid, seeds, log):
    """Runs every candidate at every (set, size); returns the tables."""
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            for size in sizes:
                base = sized(name, size, tmp)
                rows = count_rows(base)
                for model in models:
                    for i, change in enumerate(grid or SIZE_GRID[model]):
                        for seed in seeds:
                            records.append(
                                _sized_run(
                                    base,
                                    name,
                                    rows,
                                    model,
                                    i,
                                    change,
                                    seed,
                                    tmp,
                                )  # fmt: skip
                            )
                            print(json.dumps(records[-1]), flush=True)
                            if log:
                                with open(log, "a") as f:
                                    f.write(json.dumps(records[-1]) + "\n")
    return size_table(records)


def _sized_run(base, name, rows, model, i, change, seed, tmp):
    config_change = dict(change)
    if "ema_epochs" in config_change:
        epochs = config_change.pop("ema_epochs")
        steps = -(-rows // 512)  # training rows / the default batch
        config_change["ema"] = 1 - 1 / (epochs * steps)
    start = time.time()
    config = resolve_layout(
        TrainConfig(**base, model=model, **config_change, seed=seed)
    )
    result = train(
        config, os.path.join(tmp, f"{name}-{rows}-{model}-{i}-{seed}"),
        verbose=0,
    )  # fmt: skip
    guard = result.metrics["linear_baseline"]
    with open(os.path.join(result.output, "config.json")) as f:
        decided = json.load(f)  # the options `for_data` decided
    return {
        "set": name,
        "rows": rows,
        "model": model,
        "candidate": change,
        "seed": seed,
        "auc": result.metrics["auc"],
        "auc_std": result.metrics["auc_std"],
        "linear_auc": guard["linear"],
        "linear_l2": guard["l2"],
        "epochs": len(result.history["loss"]),
        "best_epoch": int(np.argmax(result.history[config.monitor])) + 1,
        "train_auc_last": result.history.get("auc", [float("nan")])[-1],
        "ema": decided["ema"],
        "min_frequency": decided["min_frequency"],
        "seconds": round(time.time() - start, 1),
    }


def size_table(records):
    """One row per (model, candidate), one column per (set, rows)."""
    columns = sorted({(r["set"], r["rows"]) for r in records})
    cells = {}
    for r in records:
        key = (r["model"], json.dumps(r["candidate"]))
        cells.setdefault(key, {}).setdefault((r["set"], r["rows"]), []).append(
            r
        )
    linear = {}
    for r in records:
        linear.setdefault((r["set"], r["rows"]), []).append(r["linear_auc"])
    lines = [
        "| model | candidate | "
        + " | ".join(f"{s} {n:,}" for s, n in columns)
        + " |",
        "| --- | --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for (model, candidate), row in cells.items():
        out = []
        for c in columns:
            rs = row.get(c)
            if not rs:
                out.append("-")
                continue
            auc = np.mean([r["auc"] for r in rs])
            epochs = np.mean([r["best_epoch"] for r in rs])
            out.append(f"{auc:.4f} (ep {epochs:.0f})")
        lines.append(f"| {model} | `{candidate}` | " + " | ".join(out) + " |")
    lines.append(
        "| linear (guard) | L2 on the holdout | "
        + " | ".join(f"{np.mean(linear[c]):.4f}" for c in columns)
        + " |"
    )
    sd = {
        (r["set"], r["rows"]): r["auc_std"] for r in records
    }  # the holdout's bootstrap sd (about the same for every model)
    lines.append(
        "| bootstrap sd | of the holdout AUC | "
        + " | ".join(f"{sd[c]:.4f}" for c in columns)
        + " |"
    )
    return "\n".join(lines)


def reading(name, tmp):
    """Only the options needed to read data set `name` (no test files)."""
    if name == "planted":
        return planted(tmp)
    base, _, _, _ = real_data.DATASETS[name](tmp)
    return base


def nested(base, tmp, name):
    """`(base, scored_on)` one level down, for candidates that `refit`.

    A refit model trains on its own holdout, so its holdout metric says
    nothing. Here the candidates train on the training data alone with a
    holdout carved from it (every 10th line) and are scored on the
    held-out part one level up: the data set's validation file, or (for a
    set whose holdout is carved) the lines of that holdout, written apart.
    """
    if base.get("validation_data"):
        return dict(base, validation_data=None), base["validation_data"]
    (path,) = base["data"]
    header = base["format"] == "csv"
    opener = gzip.open if path.endswith(".gz") else open
    parts = {p: os.path.join(tmp, f"{name}-nested-{p}.txt") for p in ("a", "b")}
    with (
        opener(path, "rt") as f,
        open(parts["a"], "w") as train_part,
        open(parts["b"], "w") as holdout_part,
    ):
        for number, line in enumerate(f, start=1):
            if header and number == 1:
                train_part.write(line)
                holdout_part.write(line)
            elif number % 10 == 0:  # `holdout_every`'s rule (tffm.data)
                holdout_part.write(line)
            else:
                train_part.write(line)
    return dict(base, data=[parts["a"]]), [parts["b"]]


def folds(base, tmp, name, k):
    """`k` pairs `(base, scored_on)`: line i of the training file to fold i % k.

    Each base trains on the other folds and keeps the data set's validation
    file (or its carved holdout) for early stopping; `scored_on` is the
    fold's file.
    """
    (path,) = base["data"]
    header = base["format"] == "csv"
    opener = gzip.open if path.endswith(".gz") else open
    train_paths = [
        os.path.join(tmp, f"{name}-fold{i}-train.txt") for i in range(k)
    ]
    fold_paths = [os.path.join(tmp, f"{name}-fold{i}.txt") for i in range(k)]
    outs = [open(p, "w") for p in train_paths + fold_paths]
    try:
        with opener(path, "rt") as f:
            if header:
                first = f.readline()
                for out in outs:
                    out.write(first)
            for number, line in enumerate(f):
                for i in range(k):
                    (outs[k + i] if number % k == i else outs[i]).write(line)
    finally:
        for out in outs:
            out.close()
    return [
        (dict(base, data=[train_paths[i]]), [fold_paths[i]]) for i in range(k)
    ]


def holdout_score(base, task, model, change, tmp, tag, seeds=(0,), score=None):
    """Mean holdout metric and epochs over `seeds`.

    With `score` (files), the metric is the model's on those files instead.
    """
    values, epochs = [], []
    key = "auc" if task == "binary" else "rmse"
    if not score:
        # A refit model trains on the holdout that would score it.
        if change.get("refit"):
            raise SystemExit(
                f"{change}: a candidate that refits needs --nested or --folds"
            )
        change = dict(change, refit=False)
    for seed in seeds:
        config = resolve_layout(
            TrainConfig(**base, model=model, **dict(change, seed=seed))
        )
        result = train(config, os.path.join(tmp, f"{tag}-{seed}"), verbose=0)
        if score:
            metrics = evaluate_files(result.model, config.layout, score)
        else:
            # Without refit, metrics.json is the chosen model's on the
            # holdout / validation file; `calibrate` leaves AUC as it is.
            metrics = result.metrics
        values.append(float(metrics[key]))
        epochs.append(len(result.history["loss"]))
    return float(np.mean(values)), float(np.mean(epochs))


def choose(scores, task):
    """Index of the candidate with the smallest worst-case regret."""
    s = np.asarray(scores)  # (candidates, data sets)
    regret = s.max(0) - s if task == "binary" else s - s.min(0)
    order = sorted(
        range(len(s)), key=lambda i: (regret[i].max(), regret[i].mean())
    )
    return order[0], regret


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="e.g. binary/fm")
    parser.add_argument("--seeds", default="0", help="e.g. 0,1,2")
    parser.add_argument("--grid", default="", help="JSON list of changes")
    parser.add_argument(
        "--nested",
        action="store_true",
        help="score one holdout level down (for candidates that refit)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="score out of fold, K folds of each training file",
    )
    parser.add_argument(
        "--sets", default="", help="only these data sets, e.g. frappe,criteo"
    )
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--sizes",
        default="",
        help="run the size sweep at these training rows, e.g. 5000,full",
    )
    parser.add_argument("--models", default="deepfm,fm", help="--sizes only")
    parser.add_argument("--log", default="", help="--sizes: JSON lines file")
    args = parser.parse_args()
    if args.sizes:
        sizes = [None if s == "full" else int(s) for s in args.sizes.split(",")]
        text = size_sweep(
            args.models.split(","),
            args.sets.split(",") if args.sets else list(BINARY_SETS),
            sizes,
            json.loads(args.grid) if args.grid else None,
            [int(s) for s in args.seeds.split(",")],
            args.log,
        )
        print(text)
        if not args.no_record:
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
            record_section(
                "choose_defaults --sizes",
                f"\n### Size sweep, {stamp}\n\n{text}\n",
            )
        return 0
    if args.folds and (args.nested or args.folds < 2):
        parser.error("--folds needs K >= 2 and no --nested")
    wanted = [tuple(w.split("/")) for w in args.only.split(",") if w]
    seeds = [int(s) for s in args.seeds.split(",")]
    grids = dict(GRIDS)
    if args.grid:
        if len(wanted) != 1:
            parser.error("--grid needs exactly one --only entry")
        grids[wanted[0]] = json.loads(args.grid)
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        # Per data set, `(base, scored_on)` pairs, one per fold (one without
        # --folds); `scored_on` None: the base's own holdout.
        splits = {}
        for (task, model), grid in grids.items():
            if wanted and (task, model) not in wanted:
                continue
            sets = BINARY_SETS if task == "binary" else REGRESSION_SETS
            if args.sets:
                sets = [n for n in sets if n in args.sets.split(",")]
            scores, epochs = [], []
            start = time.time()
            for i, change in enumerate(grid):
                row, row_epochs = [], []
                for name in sets:
                    if name not in splits:
                        base = reading(name, tmp)
                        splits[name] = (
                            [nested(base, tmp, name)]
                            if args.nested
                            else folds(base, tmp, name, args.folds)
                            if args.folds
                            else [(base, None)]
                        )
                    results = [
                        holdout_score(
                            base,
                            task,
                            model,
                            change,
                            tmp,
                            f"{task}-{model}-{i}-{name}-{j}",
                            seeds,
                            score,
                        )  # fmt: skip
                        for j, (base, score) in enumerate(splits[name])
                    ]  # the mean over folds
                    value, n = (
                        float(np.mean(r)) for r in zip(*results, strict=True)
                    )
                    row.append(value)
                    row_epochs.append(n)
                    print(
                        f"{task}/{model} {json.dumps(change)} {name}: "
                        f"{value:.4f} ({n:.1f} epochs)",
                        flush=True,
                    )
                scores.append(row)
                epochs.append(row_epochs)
            best, regret = choose(scores, task)
            sections.append(
                table(task, model, grid, sets, scores, epochs, regret, best)
                + f"\n\nSeeds {args.seeds} (mean over them); "
                + (
                    "scored one holdout level down (`--nested`); "
                    if args.nested
                    else f"scored out of fold (`--folds {args.folds}`); "
                    if args.folds
                    else ""
                )
                + f"{(time.time() - start) / 60:.0f} min."
            )
            print(sections[-1], flush=True)
    if not args.no_record and sections:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        record_section(
            "choose_defaults",
            f"\n### Defaults: choose_defaults.py, {stamp}, {machine}\n\n"
            "Holdout metric of each candidate (training data only: "
            "every 10th line of the training file, or the data set's "
            "validation file); regret = distance to the best candidate "
            "on that data set; chosen = smallest worst-case regret. "
            "`{}` is `tffm.train.defaults.AUTO_DEFAULTS` as it stood.\n\n"
            + "\n\n".join(sections)
            + "\n",
        )


def table(task, model, grid, sets, scores, epochs, regret, best):
    metric = "AUC" if task == "binary" else "RMSE"
    # `auto`: decided by the data (`TrainConfig.for_data`).
    defaults = AUTO_DEFAULTS[(task, model)]
    lines = [
        f"**{task} / {model}** (holdout {metric}; defaults then: "
        f"{json.dumps(defaults, default=repr)})",
        "",
        "| candidate | " + " | ".join(sets) + " | worst regret | mean regret |",
        "| --- | " + " | ".join("---:" for _ in sets) + " | ---: | ---: |",
    ]
    for i, change in enumerate(grid):
        mark = " **chosen**" if i == best else ""
        cells = [
            f"{scores[i][j]:.4f} ({epochs[i][j]:.3g} ep)"
            for j in range(len(sets))
        ]
        lines.append(
            f"| `{json.dumps(change)}`{mark} | "
            + " | ".join(cells)
            + f" | {regret[i].max():.4f} | {regret[i].mean():.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
