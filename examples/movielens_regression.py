"""MovieLens-100K ratings: regression with side fields and a list feature.

Joins `u.data` with the users' age, gender and occupation and the films'
genres (a list column) and release year into one CSV, trains the
regression FM with `tffm.train` at its defaults (64 factors, free biases,
refit on every training row), and reports the RMSE on held-out ratings.

    python examples/movielens_regression.py --data ../shared/data/movielens_100k

`--data` is the folder of GroupLens' `ml-100k` files (`u.data`, `u.user`,
`u.item`).
"""

import argparse
import csv
import os

from tffm.train import TrainConfig
from tffm.train import train
from tffm.train.evaluation import evaluate_files

GENRES = (
    "unknown", "action", "adventure", "animation", "children", "comedy",
    "crime", "documentary", "drama", "fantasy", "film_noir", "horror",
    "musical", "mystery", "romance", "sci_fi", "thriller", "war", "western",
)  # fmt: skip
COLUMNS = {
    "user": {"kind": "categorical"},
    "item": {"kind": "categorical"},
    "age": {"kind": "categorical"},
    "gender": {"kind": "categorical"},
    "occupation": {"kind": "categorical"},
    "genres": {"kind": "list", "max_len": 6},
    "year": {"kind": "categorical"},
}


def write_csv(data: str, folder: str, rows: int | None) -> tuple[str, str]:
    """Writes train.csv and test.csv (every 5th rating); returns their paths."""
    users = {}
    with open(os.path.join(data, "u.user"), encoding="latin-1") as file:
        for line in file:
            user, age, gender, occupation, _ = line.rstrip("\n").split("|")
            users[user] = (f"{int(age) // 10 * 10}s", gender, occupation)
    items = {}
    with open(os.path.join(data, "u.item"), encoding="latin-1") as file:
        for line in file:
            fields = line.rstrip("\n").split("|")
            genres = [
                g
                for g, flag in zip(GENRES, fields[5:], strict=True)
                if flag == "1"
            ]
            items[fields[0]] = ("|".join(genres), fields[2][-4:])
    os.makedirs(folder, exist_ok=True)
    paths = (
        os.path.join(folder, "train.csv"),
        os.path.join(folder, "test.csv"),
    )
    with (
        open(os.path.join(data, "u.data")) as ratings,
        open(paths[0], "w", newline="") as train_file,
        open(paths[1], "w", newline="") as test_file,
    ):
        writers = [csv.writer(train_file), csv.writer(test_file)]
        for writer in writers:
            writer.writerow(["rating", *COLUMNS])
        for i, line in enumerate(ratings):
            if rows is not None and i == rows:
                break
            user, item, rating, _ = line.split("\t")
            row = [rating, user, item, *users[user], *items[item]]
            writers[i % 5 == 4].writerow(row)
    return paths


def main() -> None:
    """Runs the example from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--output", default="movielens-example")
    parser.add_argument("--rows", type=int, help="use only the first N ratings")
    parser.add_argument("--epochs", type=int, help="default: tffm's")
    args = parser.parse_args()

    train_csv, test_csv = write_csv(
        args.data, os.path.join(args.output, "data"), args.rows
    )
    options = {"epochs": args.epochs} if args.epochs else {}
    config = TrainConfig(
        data=[train_csv],
        format="csv",
        task="regression",
        label="rating",
        columns=COLUMNS,
        **options,
    )
    result = train(config, os.path.join(args.output, "model"), verbose=0)
    metrics = evaluate_files(result.model, config.layout, [test_csv])
    print(f"test RMSE {metrics['rmse']:.4f}, MAE {metrics['mae']:.4f}")


if __name__ == "__main__":
    main()
