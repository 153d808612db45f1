"""Precise BN on Frappe's holdout: calibration with and without it.

Trains the Frappe DeepFM recipe of `real_data.py` (`tuned`, without refit)
once per seed with `precise_bn` and `calibrate` off, then, on the holdout
(every 10th line of the training file; no test file is read):

- the Platt fit `(scale, shift)` of the model's raw logits and the
  calibrated logloss, with the batch-norm statistics as training left them
  and after `tffm.precise_bn.recompute_batch_norm`;
- the transfer: one seed's Platt fit applied to the other seed's logits
  (what a refit model does with the selection model's fit), and the
  logloss that costs against the seed's own fit.

Usage: python benchmarks/precise_bn.py [--seeds 0,1] [--no-record]
Appends to benchmarks/RESULTS.md with the machine and date.
"""

import argparse
import dataclasses
import datetime
import os
import platform
import tempfile

import numpy as np
import real_data

from tffm.calibration import fit_platt
from tffm.config import TrainConfig
from tffm.metrics import log_loss
from tffm.metrics import roc_auc
from tffm.training import resolve_layout
from tffm.training import train

HERE = os.path.dirname(os.path.abspath(__file__))


def holdout_logits(model, dataset):
    import keras

    raw = keras.Model(model.inputs, model.get_layer("raw_logit").output)
    logits, labels = [], []
    for features, y in dataset:
        logits.append(keras.ops.convert_to_numpy(raw(features))[:, 0])
        labels.append(np.asarray(y).reshape(-1))
    return np.concatenate(logits).astype(np.float64), np.concatenate(labels)


def calibrated_logloss(logits, labels, fit):
    scale, shift = fit
    return log_loss(labels, 1.0 / (1.0 + np.exp(-(scale * logits + shift))))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    from tffm.encoder import FeatureEncoder
    from tffm.precise_bn import recompute_batch_norm
    from tffm.training import open_source

    rows = {}  # seed -> {"kept": (logits, labels), "precise": ...}
    with tempfile.TemporaryDirectory() as tmp:
        base, tuning, models, _ = real_data.frappe(tmp)
        recipe = dict(models["deepfm"], epochs=tuning["epochs"])
        for seed in seeds:
            config = resolve_layout(
                TrainConfig(
                    **base,
                    **recipe,
                    seed=seed,
                    precise_bn=False,
                    calibrate=False,
                ),
                report=lambda _: None,
            )
            result = train(config, os.path.join(tmp, f"s{seed}"), verbose=0)
            encoder = FeatureEncoder(result.features)
            holdout = encoder.map_dataset(
                open_source(config, config.data, holdout=True).dataset
            ).cache()
            training = encoder.map_dataset(
                open_source(
                    dataclasses.replace(config, seed=seed),
                    config.data,
                    training=True,
                    holdout=False,
                ).dataset
            )
            rows[seed] = {"kept": holdout_logits(result.model, holdout)}
            recompute_batch_norm(result.model, training)
            rows[seed]["precise"] = holdout_logits(result.model, holdout)
    lines = [
        "| seed | batch norm | AUC | Platt scale, shift | logloss (own fit) "
        "| logloss (other seed's fit) |",
        "| ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for kind, name in (("kept", "as trained"), ("precise", "precise BN")):
        fits = {s: fit_platt(*rows[s][kind]) for s in seeds}
        for seed in seeds:
            logits, labels = rows[seed][kind]
            other = seeds[(seeds.index(seed) + 1) % len(seeds)]
            own = calibrated_logloss(logits, labels, fits[seed])
            moved = calibrated_logloss(logits, labels, fits[other])
            lines.append(
                f"| {seed} | {name} | {roc_auc(labels, logits):.4f} | "
                f"{fits[seed][0]:.3f}, {fits[seed][1]:+.3f} | {own:.4f} | "
                f"{moved:.4f} |"
            )
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, CPU only"
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write(
                f"\n### precise_bn.py, {stamp}, {machine}\n\n"
                "Frappe DeepFM (`real_data.py`'s tuned recipe without refit), "
                "holdout only (every 10th line of the training file).\n\n"
                f"{table}\n"
            )


if __name__ == "__main__":
    main()
