"""LR / FM / DeepFM on the real data sets in ../shared/data, via tffm.training.

Usage: python benchmarks/real_data.py [--datasets frappe,movielens,...]
Prints a Markdown table (metric +- bootstrap std over the test rows) and
appends it to benchmarks/RESULTS.md with the machine and date. Hyper-
parameters are fixed here; they were chosen on each training set's
holdout part (every 10th line), never on a test split.
"""

import argparse
import datetime
import os
import platform
import shutil
import tempfile
import time

from tffm.config import TrainConfig
from tffm.evaluation import evaluate_files
from tffm.training import train

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data")


def frappe(tmp):
    d = os.path.join(DATA, "frappe_nfm")
    base = dict(
        data=[os.path.join(d, "frappe.validation.libfm.gz")],
        format="libsvm",
        fields=[f"field{i}" for i in range(10)],
        binary_labels=True,
        holdout_every=10,
        batch_size=512,
        epochs=40,
        patience=3,
        refit=True,
    )
    models = {
        "lr": dict(model="lr", learning_rate=0.01),
        "fm": dict(
            model="fm", embedding_dim=16, learning_rate=0.005, table_l2=1e-4
        ),
        "deepfm": dict(
            model="deepfm",
            embedding_dim=16,
            hidden_units=[400, 400],
            dropout=0.5,
            batch_norm=True,
            embeddings_l2=0.01,
            learning_rate=0.003,
        ),
    }
    return base, models, [os.path.join(d, "frappe.test.libfm.gz")], "binary"


def movielens(tmp):
    """MovieLens-100K, GroupLens u1 split, with user and item side fields."""
    d = os.path.join(DATA, "movielens_100k")
    with open(os.path.join(d, "u.data")) as f:
        ratings = [line.rstrip("\n").split("\t") for line in f]
    users = {}
    with open(os.path.join(d, "u.user"), encoding="latin-1") as f:
        for line in f:
            uid, age, gender, occupation, _ = line.rstrip("\n").split("|")
            users[uid] = (str(int(age) // 10), gender, occupation)
    genres = {}
    with open(os.path.join(d, "u.item"), encoding="latin-1") as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            flags = parts[5:]
            genres[parts[0]] = "|".join(
                f"g{k}" for k, flag in enumerate(flags) if flag == "1"
            )
    header = "user,item,age,gender,occupation,genres,rating\n"

    def write(rows, name):
        rows = sorted(rows, key=lambda r: (int(r[0]), int(r[1])))
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write(header)
            for user, item, rating, _ in rows:
                f.write(
                    ",".join([user, item, *users[user], genres[item], rating])
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
    }
    base = dict(
        data=[train_path],
        format="csv",
        columns=columns,
        label="rating",
        task="regression",
        holdout_every=10,
        batch_size=256,
        epochs=40,
        patience=3,
        refit=True,
    )
    models = {
        "lr": dict(model="lr", learning_rate=0.01),
        "fm": dict(
            model="fm", embedding_dim=64, learning_rate=0.003, embeddings_l2=0.1
        ),
        "deepfm": dict(
            model="deepfm",
            embedding_dim=64,
            hidden_units=[256, 128],
            dropout=0.5,
            batch_norm=True,
            embeddings_l2=0.1,
            learning_rate=0.003,
        ),
    }
    return base, models, [test_path], "regression"


def criteo(tmp):
    d = os.path.join(DATA, "criteo_kaggle_format_8k")
    base = dict(
        data=[os.path.join(d, "train.csv")],
        validation_data=[os.path.join(d, "dev.csv")],
        format="criteo",
        min_frequency=3,
        batch_size=256,
        epochs=30,
        patience=2,
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
    return base, models, [os.path.join(d, "test.csv")], "binary"


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
        min_frequency=2,
        batch_size=256,
        epochs=30,
        patience=2,
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
    return base, models, [paths["test"]], "binary"


DATASETS = {
    "frappe": frappe,
    "movielens": movielens,
    "criteo": criteo,
    "avazu": avazu,
}


def run(names, model_names):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            base, models, test_files, task = DATASETS[name](tmp)
            for model_name, options in models.items():
                if model_names and model_name not in model_names:
                    continue
                config = TrainConfig(**base, **options)
                start = time.time()
                result = train(
                    config, os.path.join(tmp, f"{name}-{model_name}"), verbose=0
                )
                metrics = evaluate_files(result.model, config, test_files)
                rows.append(
                    (
                        name,
                        model_name,
                        task,
                        metrics,
                        len(result.history["loss"]),
                        time.time() - start,
                    )
                )
                print(format_row(rows[-1]), flush=True)
    return rows


def format_row(row):
    name, model, task, m, epochs, seconds = row
    if task == "binary":
        cells = (
            f"AUC {m['auc']:.4f} ± {m['auc_std']:.4f}",
            f"logloss {m['logloss']:.4f} ± {m['logloss_std']:.4f}",
        )
    else:
        cells = (
            f"RMSE {m['rmse']:.4f} ± {m['rmse_std']:.4f}",
            f"MAE {m['mae']:.4f} ± {m['mae_std']:.4f}",
        )
    return (
        f"| {name} | {model} | {cells[0]} | {cells[1]} | "
        f"{int(m['rows']):,} | {epochs} | {seconds:.0f} |"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="frappe,movielens,criteo,avazu")
    parser.add_argument("--models", default="")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if not os.path.isdir(DATA):
        raise SystemExit(f"No shared data at {DATA}; nothing to benchmark.")
    names = [n for n in args.datasets.split(",") if n]
    rows = run(names, [m for m in args.models.split(",") if m])
    table = "\n".join(
        [
            "| data | model | metric 1 (test) | metric 2 (test) | test rows "
            "| epochs | seconds |",
            "| --- | --- | --- | --- | ---: | ---: | ---: |",
        ]
        + [format_row(r) for r in rows]
    )
    print(table)
    if not args.no_record:
        stamp = datetime.date.today().isoformat()
        machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write(f"\n### real_data.py, {stamp}, {machine}\n\n{table}\n")


if __name__ == "__main__":
    main()
