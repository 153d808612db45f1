"""Precise BN on Frappe's holdout: calibration with and without it.

Trains the Frappe DeepFM recipe of `real_data.py` (`tuned`, without refit)
once per seed with `precise_bn` and `calibrate` off, then, on the holdout
(every 10th line of the training file; no test file is read):

- the Platt fit `(scale, shift)` of the model's raw logits and the
  calibrated logloss, with the batch-norm statistics as training left them
  and after `tffm.train.precise_bn.recompute_batch_norm`;
- the transfer: one seed's Platt fit applied to the other seed's logits
  (what a refit model does with the selection model's fit), and the
  logloss that costs against the seed's own fit.

Usage: python benchmarks/precise_bn.py [--seeds 0,1] [--no-record]
Writes to benchmarks/RESULTS.md with the machine and date.
"""

import argparse
import datetime
import os
import platform
import tempfile

import numpy as np
import real_data
from results import record_section

from tffm.data import open_source
from tffm.metrics import log_loss
from tffm.metrics import roc_auc
from tffm.train.calibration import fit_platt
from tffm.train.config import TrainConfig
from tffm.train.inputs import resolve_layout
from tffm.train.pipeline import train

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
    from tffm.train.precise_bn import recompute_batch_norm

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
                )
            )
            result = train(config, os.path.join(tmp, f"s{seed}"), verbose=0)
            encoder = FeatureEncoder(result.features)
            layout = config.layout
            holdout = encoder.map_dataset(
                open_source(
                    layout,
                    config.data,
                    batch_size=config.batch_size,
                    holdout=True,
                ).dataset
            ).cache()
            training = encoder.map_dataset(
                open_source(
                    layout,
                    config.data,
                    batch_size=config.batch_size,
                    holdout=False,
                    shuffle_buffer=config.shuffle_buffer,
                    seed=seed,
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
        record_section(
            "precise_bn",
            f"\n### precise_bn.py, {stamp}, {machine}\n\n"
            "Frappe DeepFM (`real_data.py`'s tuned recipe without refit), "
            "holdout only (every 10th line of the training file).\n\n"
            f"{table}\n",
        )


if __name__ == "__main__":
    main()
