"""LR / FM / DeepFM on the real data sets in ../shared/data, via tffm.train.

Usage: python benchmarks/real_data.py [--datasets frappe,movielens,...]
    [--models lr,fm,deepfm] [--modes default,tuned] [--seeds 0,1,2]
    [--baselines torch_fm,lightgbm] [--tuned-config DATASET=best_config.json]
    [--no-record]

Each data set is read with only the options needed to read it (`base`).
Rows:
- `default`: `tffm train` with nothing else (the defaults by task and
  model, README "Defaults"), the model chosen;
- `tuned`: the recipe below (`tuning` + the model's options), chosen on the
  holdout of each training set (every 10th line) or its validation file,
  never on a test split; with `--tuned-config`, the values `tffm tune`
  chose for that data set and model (on the same holdout) instead;
- baselines on the same encoded features and the same split
  (`baselines.py`): a hand-written PyTorch FM and LightGBM, each with a
  small grid chosen on the same holdout.
Every row is trained with each seed: the table gives the test metric's
mean and standard deviation over seeds, and the mean bootstrap standard
deviation over the test rows (200 resamples). Writes its section of
benchmarks/RESULTS.md with the machine and date.
"""

import argparse
import datetime
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time

import baselines
import numpy as np
from results import record_section

from tffm.train.config import TrainConfig
from tffm.train.evaluation import evaluate_files
from tffm.train.inputs import resolve_layout
from tffm.train.pipeline import train

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def frappe(tmp):
    d = os.path.join(DATA, "frappe_nfm")
    # Reading: the file and its format (its one-hot rows name the fields,
    # its -1/+1 labels are read as 0/1 without flags).
    base = dict(
        data=[os.path.join(d, "frappe.validation.libfm.gz")],
        format="libsvm",
    )
    # `tuned`: the values `tffm tune` chose on the holdout (2026-12-04:
    # Bayesian, 45 trials for the FM, 58 for the DeepFM; RESULTS.md), then
    # refit on every training row; the DeepFM also averages its weights
    # (`ema` 0.995: on the same holdout, the DeepFM default's grid in
    # RESULTS.md "Defaults" 2026-12-05).
    # Options tffm tune did not search take today's defaults (the FM's
    # `min_frequency` 3 since 2026-12-05; it searched at 1).
    models = {
        "lr": dict(model="lr", learning_rate=0.01, batch_size=512),
        "fm": dict(
            model="fm",
            embedding_dim=64,
            learning_rate=0.0161,
            embeddings_l2=0.001,
            batch_size=1024,
            # The monitor its search ranked trials on (the binary FM's
            # default became `val_auc_logloss` on 2026-12-07).
            monitor="val_auc",
        ),
        # 64 factors, not the 32 `tffm tune` chose: on the same holdout
        # (3 seeds) 0.9537 against 0.9524 (RESULTS.md 2026-12-06, "Free
        # biases for the tuned Frappe DeepFM"); batch 4096 (past the edge
        # of the search's 128-2048) with room for 80 epochs: 0.9545
        # against 2048's 0.9540 (RESULTS.md 2026-12-06 22:27); and a
        # penalty on the whole table each step, which `tffm tune` did not
        # search then: `table_l2` 1e-3, 0.9569 against 0.9545 (RESULTS.md
        # 2026-12-07).
        "deepfm": dict(
            model="deepfm",
            embedding_dim=64,
            hidden_units=[256, 128],
            dropout=0.5,
            batch_norm=True,
            embeddings_l2=0.1,
            table_l2=1e-3,
            kernel_l2=1e-5,
            learning_rate=0.00251,
            batch_size=4096,
            ema=0.995,
            epochs=80,
        ),
    }
    tuning = dict(epochs=40, refit=True)
    return base, tuning, models, [os.path.join(d, "frappe.test.libfm.gz")]


def movielens(tmp):
    """MovieLens-100K, GroupLens u1 split, with user and item side fields.

    User: age (by decade), gender, occupation. Item: genres (a list,
    summed: the default combiner) and release year (categorical; the one
    film without a date has it missing).
    """
    d = os.path.join(DATA, "movielens_100k")
    with open(os.path.join(d, "u.data")) as f:
        ratings = [line.rstrip("\n").split("\t") for line in f]
    users = {}
    with open(os.path.join(d, "u.user"), encoding="latin-1") as f:
        for line in f:
            uid, age, gender, occupation, _ = line.rstrip("\n").split("|")
            users[uid] = (str(int(age) // 10), gender, occupation)
    items = {}
    with open(os.path.join(d, "u.item"), encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            flags = parts[5:]
            genres = "|".join(
                f"g{k}" for k, flag in enumerate(flags) if flag == "1"
            )
            # Release date "01-Jan-1995": the year; empty when unknown.
            year = parts[2].rsplit("-", 1)[-1]
            items[parts[0]] = (genres, year)
    header = "user,item,age,gender,occupation,genres,year,rating\n"

    def write(rows, name):
        rows = sorted(rows, key=lambda r: (int(r[0]), int(r[1])))
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(header)
            for user, item, rating, _ in rows:
                f.write(
                    ",".join([user, item, *users[user], *items[item], rating])
                    + "\n"
                )
        return path

    # u1.test = lines 1..20000 of u.data; u1.base = the rest.
    train_path = write(ratings[20000:], "u1.base.csv")
    test_path = write(ratings[:20000], "u1.test.csv")
    columns = {
        "user": {"kind": "integer"},
        "item": {"kind": "integer"},
        "age": {"kind": "categorical"},
        "gender": {"kind": "categorical"},
        "occupation": {"kind": "categorical"},
        "genres": {"kind": "list", "max_len": 6},
        "year": {"kind": "categorical"},
    }
    base = dict(
        data=[train_path],
        format="csv",
        columns=columns,
        label="rating",
        task="regression",
    )
    models = {
        "lr": dict(model="lr", learning_rate=0.01),
        # `tuned`: chosen on the holdout of u1.base (every 10th line;
        # RESULTS.md "Defaults" 2026-12-05: `ema` 0.99 and 64 factors with
        # room to train, here up to 150 epochs; 2026-12-06: free biases,
        # batch 128, learning rate 2e-3 with `ema` 0.998), then refit on
        # every row.
        "fm": dict(
            model="fm",
            embedding_dim=64,
            learning_rate=0.002,
            embeddings_l2=0.1,
            linear_l2=0.0,
            batch_size=128,
            ema=0.998,
            epochs=150,
        ),
        "deepfm": dict(
            model="deepfm",
            embedding_dim=64,
            hidden_units=[256, 128],
            dropout=0.5,
            batch_norm=True,
            embeddings_l2=0.1,
            learning_rate=0.003,
            batch_size=256,
        ),
    }
    tuning = dict(epochs=40, refit=True)
    return base, tuning, models, [test_path]


def criteo(tmp):
    d = os.path.join(DATA, "criteo_kaggle_format_8k")
    base = dict(
        data=[os.path.join(d, "train.csv")],
        validation_data=[os.path.join(d, "dev.csv")],
        format="criteo",
    )
    models = {
        "lr": dict(model="lr", learning_rate=0.01),
        "fm": dict(
            model="fm", embedding_dim=8, learning_rate=0.003, embeddings_l2=1e-3
        ),
        "deepfm": dict(
            model="deepfm",
            embedding_dim=8,
            hidden_units=[128, 64],
            dropout=0.5,
            embeddings_l2=1e-3,
            learning_rate=0.001,
        ),
    }
    tuning = dict(min_frequency=3, batch_size=256, epochs=30, patience=2)
    return base, tuning, models, [os.path.join(d, "test.csv")]


def avazu(tmp):
    d = os.path.join(DATA, "avazu_9k")
    with open(os.path.join(d, "train.csv")) as f:
        header = f.readline()
    paths = {}
    for name in ("dev", "test"):  # only train.csv has a header line
        paths[name] = os.path.join(tmp, f"avazu_{name}.csv")
        with (
            open(paths[name], "w") as out,
            open(os.path.join(d, f"{name}.csv")) as f,
        ):
            out.write(header)
            shutil.copyfileobj(f, out)
    names = header.strip().split(",")
    columns = {
        n: {"kind": "categorical"} for n in names if n not in ("id", "click")
    }
    base = dict(
        data=[os.path.join(d, "train.csv")],
        validation_data=[paths["dev"]],
        format="csv",
        columns=columns,
        label="click",
    )
    models = {
        "lr": dict(model="lr", learning_rate=0.01),
        "fm": dict(
            model="fm", embedding_dim=8, learning_rate=0.003, embeddings_l2=1e-3
        ),
        "deepfm": dict(
            model="deepfm",
            embedding_dim=8,
            hidden_units=[128, 64],
            dropout=0.5,
            embeddings_l2=1e-3,
            learning_rate=0.001,
        ),
    }
    tuning = dict(min_frequency=2, batch_size=256, epochs=30, patience=2)
    return base, tuning, models, [paths["test"]]


DATASETS = {
    "frappe": frappe,
    "movielens": movielens,
    "criteo": criteo,
    "avazu": avazu,
}
BASELINES = {
    "torch_fm": (baselines.torch_available, baselines.torch_fm),
    "lightgbm": (baselines.lightgbm_available, baselines.lightgbm),
}


def task_of(base):
    return base.get("task", "binary")


def keys_of(task):
    return ("auc", "logloss") if task == "binary" else ("rmse", "mae")


def tuned_config(spec):
    """`DATASET=path` -> ((dataset, model), (options, label)).

    The options are the values `tffm tune` searched (`search_space`) as its
    `best_config.json` holds them; everything else stays the default, as
    it was in the trials.
    """
    from tffm.train.tuning import search_space

    name, sep, path = spec.partition("=")
    if not sep or name not in DATASETS:
        raise SystemExit(
            f"--tuned-config {spec!r}: expected DATASET=best_config.json "
            f"with DATASET one of {sorted(DATASETS)}"
        )
    best = TrainConfig.from_file(path)  # checked as `tffm train` checks it
    model = best.model
    options = {key: getattr(best, key) for key, _, _ in search_space(model)}
    options["model"] = model
    trials = os.path.join(os.path.dirname(path), "trials.jsonl")
    count = None
    if os.path.exists(trials):
        with open(trials) as f:
            count = sum(1 for _ in f)
    label = "tffm tune" + (f" ({count} trials)" if count else "")
    return (name, model), (options, label)


def run_tffm(name, base, tuning, models, test_files, args, tmp):
    """Yields one summary row per (model, mode) over the seeds."""
    task = task_of(base)
    for model_name, options in models.items():
        if args.models and model_name not in args.models:
            continue
        for mode in args.modes:
            extra = {"model": options["model"]}
            label = mode
            if mode == "tuned":
                extra = dict(tuning, **options)
                found = args.tuned_config.get((name, options["model"]))
                if found is not None:  # what `tffm tune` chose, on its own
                    extra, label = found
            runs = []
            for seed in args.seeds:
                config = resolve_layout(TrainConfig(**base, **extra, seed=seed))
                start = time.time()
                result = train(
                    config,
                    os.path.join(tmp, f"{name}-{model_name}-{mode}-{seed}"),
                    verbose=0,
                )
                metrics = evaluate_files(
                    result.model, config.layout, test_files
                )
                metrics["epochs"] = len(result.history["loss"])
                metrics["seconds"] = time.time() - start
                runs.append(metrics)
                print(
                    f"  {name} {model_name} {mode} seed {seed}: "
                    + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys_of(task))
                    + f" ({metrics['epochs']} epochs, "
                    f"{metrics['seconds']:.0f} s)",
                    flush=True,
                )
            yield summarize(name, f"tffm {model_name}", label, task, runs)


def run_baselines(name, base, test_files, args):
    """The baselines on the default config's features and split."""
    from tffm.data import open_source
    from tffm.data import vocab
    from tffm.train.build import build_features

    task = task_of(base)
    wanted = [b for b in args.baselines if BASELINES[b][0]()]
    for missing in sorted(set(args.baselines) - set(wanted)):
        print(f"  {missing}: not installed, skipped", flush=True)
    if not wanted:
        return
    config = resolve_layout(TrainConfig(**base))
    layout = config.layout
    holdout = not config.validation_data
    scanned = vocab.scan(
        open_source(
            layout,
            config.data,
            batch_size=baselines.READ_BATCH,
            holdout=False if holdout else None,
        ).dataset,
        layout.kinds(),
        log_columns=layout.log_columns(),
    )
    features = build_features(layout, scanned)

    def arrays(files, part):
        return baselines.encoded_arrays(layout, features, files, part)

    train_rows = arrays(config.data, False if holdout else None)
    valid_rows = (
        arrays(config.data, True)
        if holdout
        else arrays(config.validation_data, None)
    )
    test_rows = arrays(test_files, None)
    for baseline in wanted:
        runs = []
        for seed in args.seeds:
            start = time.time()
            metrics, choice = BASELINES[baseline][1](
                features, task, train_rows, valid_rows, test_rows, seed=seed
            )
            metrics["seconds"] = time.time() - start
            metrics["choice"] = choice
            runs.append(metrics)
            print(
                f"  {name} {baseline} seed {seed}: "
                + ", ".join(f"{k} {metrics[k]:.4f}" for k in keys_of(task))
                + f" {choice} ({metrics['seconds']:.0f} s)",
                flush=True,
            )
        yield summarize(name, baseline, "holdout grid", task, runs)


def summarize(name, what, mode, task, runs):
    row = {"data": name, "what": what, "mode": mode, "task": task}
    for key in keys_of(task):
        values = np.array([r[key] for r in runs])
        row[key] = (
            float(values.mean()),
            float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            float(np.mean([r.get(f"{key}_std", np.nan) for r in runs])),
        )
    row["seeds"] = len(runs)
    row["seconds"] = float(np.mean([r["seconds"] for r in runs]))
    row["epochs"] = (
        float(np.mean([r["epochs"] for r in runs]))
        if "epochs" in runs[0]
        else None
    )
    return row


def format_row(row):
    cells = []
    for key in keys_of(row["task"]):
        mean, seed_sd, boot = row[key]
        name = key.upper() if key in ("auc", "rmse", "mae") else key
        boot = "" if np.isnan(boot) else f" (bootstrap {boot:.4f})"
        cells.append(f"{name} {mean:.4f} ± {seed_sd:.4f}{boot}")
    epochs = "-" if row["epochs"] is None else f"{row['epochs']:.1f}"
    return (
        f"| {row['data']} | {row['what']} | {row['mode']} | {cells[0]} | "
        f"{cells[1]} | {row['seeds']} | {epochs} | {row['seconds']:.0f} |"
    )


HEADER = (
    "| data | model | configuration | metric 1 (test): mean ± sd over "
    "seeds | metric 2 (test) | seeds | epochs | seconds / run |\n"
    "| --- | --- | --- | --- | --- | ---: | ---: | ---: |"
)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="frappe,movielens,criteo,avazu")
    parser.add_argument("--models", default="lr,fm,deepfm")
    parser.add_argument("--modes", default="default,tuned")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--baselines", default="torch_fm,lightgbm")
    parser.add_argument(
        "--tuned-config",
        action="append",
        default=[],
        metavar="DATASET=best_config.json",
        help="`tuned` rows of DATASET take the searched values (and model) "
        "of this `tffm tune` result instead of the recipe here",
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    args.tuned_config = dict(tuned_config(spec) for spec in args.tuned_config)
    for key in ("datasets", "models", "modes", "baselines"):
        setattr(args, key, [v for v in getattr(args, key).split(",") if v])
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    if not os.path.isdir(DATA):
        raise SystemExit(f"No shared data at {DATA}; nothing to benchmark.")
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            base, tuning, models, test_files = DATASETS[name](tmp)
            rows += run_tffm(name, base, tuning, models, test_files, args, tmp)
            rows += run_baselines(name, base, test_files, args)
            print(
                "\n".join([HEADER] + [format_row(r) for r in rows]), flush=True
            )
    table = "\n".join([HEADER] + [format_row(r) for r in rows])
    if not args.no_record:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        command = " ".join(shlex.quote(a) for a in sys.argv[1:])
        chosen = "".join(
            f"\n- `tffm tune`'s choice for {name} {model}: "
            + ", ".join(
                f"{key} {value}"
                for key, value in options.items()
                if key != "model"
            )
            for (name, model), (options, _) in args.tuned_config.items()
        )
        chosen = f"\n{chosen}" if chosen else ""
        record_section(
            "real_data",
            f"\n### real_data.py, {stamp}, {machine}\n\n"
            f"`python benchmarks/real_data.py {command}`; "
            f"{(time.time() - started) / 60:.0f} min, load average at "
            f"the end {load}.{chosen}\n\n{table}\n",
        )


if __name__ == "__main__":
    main()
