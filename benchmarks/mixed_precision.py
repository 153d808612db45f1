"""What `precision="mixed_bfloat16"` costs in accuracy (issue #9).

Trains the same DeepFM (the demo's planted-FM CTR data: 8 categorical
fields, 2 numeric, a tag list; embedding 8, DNN 128-64, Adam) in float32
and in mixed_bfloat16 from the same seeds, and reports test AUC / logloss
and the planted optimum. Writes the table to benchmarks/RESULTS.md.

    python benchmarks/mixed_precision.py [--rows N] [--seeds N] [--no-record]
"""

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np
from results import record_section

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    import keras

    import tffm
    from tffm.train.evaluation import evaluate_predictions

    data = tffm.synthetic.make_planted_ctr(args.rows, seed=0)
    train, test = data.split(0.8)
    encoder = tffm.FeatureEncoder(data.features)
    x_train = {k: np.asarray(v) for k, v in encoder(train.raw).items()}
    x_test = {k: np.asarray(v) for k, v in encoder(test.raw).items()}
    rows = []
    for precision in ("float32", "mixed_bfloat16"):
        for seed in range(args.seeds):
            keras.utils.set_random_seed(seed)
            model = tffm.DeepFM(
                data.features,
                embedding_dim=8,
                hidden_units=[128, 64],
                dtype=precision,
            )
            model.compile(
                optimizer=tffm.optimizers.Adam(3e-3),
                loss="binary_crossentropy",
            )
            start = time.time()
            model.fit(
                x_train,
                train.labels,
                epochs=args.epochs,
                batch_size=2048,
                verbose=0,
            )
            seconds = time.time() - start
            p = model.predict(x_test, batch_size=8192, verbose=0)[:, 0]
            scores = evaluate_predictions(test.labels, p, "binary")
            rows.append(
                (precision, seed, scores["auc"], scores["logloss"], seconds)
            )
            print(rows[-1], flush=True)
    optimum = evaluate_predictions(test.labels, test.probabilities, "binary")[
        "auc"
    ]
    lines = [
        "",
        f"### mixed_precision.py, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
        f"{platform.machine()}, {os.cpu_count()} cores, CPU only",
        "",
        f"Planted-FM data, {args.rows:,} rows (80% train / 20% test), "
        f"DeepFM embedding 8, DNN 128-64, Adam 3e-3, batch 2,048, "
        f"{args.epochs} epochs; planted optimum AUC {optimum:.4f}. Load "
        f"average at the end: {os.getloadavg()[0]:.2f}.",
        "",
        "| precision | test AUC, mean ± sd over seeds | test logloss "
        "| seconds / run |",
        "| --- | ---: | ---: | ---: |",
    ]
    for precision in ("float32", "mixed_bfloat16"):
        mine = [r for r in rows if r[0] == precision]
        auc = np.array([r[2] for r in mine])
        loss = np.array([r[3] for r in mine])
        lines.append(
            f"| {precision} | {auc.mean():.4f} ± {auc.std():.4f} | "
            f"{loss.mean():.4f} ± {loss.std():.4f} | "
            f"{np.mean([r[4] for r in mine]):.0f} |"
        )
    delta = np.mean([r[2] for r in rows if r[0] != "float32"]) - np.mean(
        [r[2] for r in rows if r[0] == "float32"]
    )
    lines += ["", f"AUC change of mixed_bfloat16: {delta:+.4f}.", ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        record_section("mixed_precision", text)


if __name__ == "__main__":
    main()
