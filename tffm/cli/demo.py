"""`tffm demo`: synthetic data to a verified, exported DeepFM in minutes."""

import argparse
import json
import os
import shutil
import time
from typing import Any

import numpy as np

from tffm.cli.flags import defaults_of
from tffm.synthetic import make_planted_ctr
from tffm.train.config import TrainConfig
from tffm.train.evaluation import evaluate_files
from tffm.train.evaluation import evaluate_predictions
from tffm.train.evaluation import write_reliability_plot

MARKER = ".tffm-demo"


def add_parser(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    common: argparse.ArgumentParser,
) -> None:
    """Adds `tffm demo` to `commands`; its defaults are `run_demo`'s."""
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="train, evaluate, export and verify on synthetic data",
        description="Generate CTR data from a planted factorization machine "
        "(no download), train DeepFM with model.fit, compare its test AUC "
        "with the planted optimum, export SavedModel + ONNX, verify parity "
        "and write a report (Markdown + PNG). Everything goes under "
        "--output, which a second run replaces.",
    )
    default = defaults_of(run_demo)
    parser.add_argument(
        "--output",
        default=default["output"],
        help="output folder (default: %(default)s)",
    )
    for flag, name, text in (
        ("--rows", "num_rows", "rows of planted data"),
        ("--epochs", "epochs", "most training epochs"),
        ("--seed", "seed", "seed of the data and the model"),
    ):
        parser.add_argument(
            flag,
            dest=name,
            metavar="N",
            type=int,
            default=default[name],
            help=f"{text} (default: %(default)s)",
        )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Runs the demo; prints the test AUC beside the planted optimum."""
    report = run_demo(
        args.output, num_rows=args.num_rows, epochs=args.epochs, seed=args.seed
    )
    gap = report["optimum_auc"] - report["test_auc"]
    print(
        f"\nTest AUC {report['test_auc']:.4f} (planted optimum "
        f"{report['optimum_auc']:.4f}, gap {gap:.4f}); parity "
        f"{'ok' if report['parity_ok'] else 'FAILED'}; "
        f"{report['seconds']['total']} s."
    )
    print(f"Report: {os.path.join(args.output, 'report.md')}")
    return 0 if report["parity_ok"] else 1


def run_demo(
    output: str = "tffm-demo",
    *,
    num_rows: int = 600_000,
    epochs: int = 8,
    seed: int = 0,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Generates planted data, trains, evaluates, exports, verifies, reports.

    Everything goes under `output` (replaced if it holds a previous demo).

    Args:
        output: str. Directory for everything the demo writes.
        num_rows: int. Rows drawn (80% train, 10% validation, 10% test).
        epochs: int. Training epochs (early stopping may end sooner).
        seed: int. Seed of the data and the model.
        verbose: Keras progress bar setting.

    Returns:
        The report's numbers as a dict.
    """
    from export.bundle import export_for_serving  # deferred: TensorFlow
    from tffm.train.pipeline import train

    _prepare(output)
    start = time.time()
    data = make_planted_ctr(
        num_rows, num_categorical=6, vocabulary_size=30, seed=seed
    )
    train_part, rest = data.split(0.8)
    valid_part, test_part = rest.split(0.5)
    data_dir = os.path.join(output, "data")
    os.makedirs(data_dir)
    paths = {
        name: part.to_csv(os.path.join(data_dir, f"{name}.csv"))
        for name, part in (
            ("train", train_part),
            ("validation", valid_part),
            ("test", test_part),
        )
    }
    config = TrainConfig(
        data=[paths["train"]],
        validation_data=[paths["validation"]],
        format="csv",
        columns=data.csv_columns(),
        label="label",
        model="deepfm",
        embedding_dim=8,
        hidden_units=[128, 64],
        dropout=0.2,
        batch_norm=False,
        embeddings_l2=0.0,
        learning_rate=8e-3,
        batch_size=2048,
        epochs=epochs,
        patience=2,
        seed=seed,
    )
    generated = time.time()
    result = train(config, os.path.join(output, "model"), verbose=verbose)
    trained = time.time()
    test_metrics = evaluate_files(result.model, config.layout, [paths["test"]])
    write_reliability_plot(
        test_metrics["calibration"],
        os.path.join(output, "calibration.png"),
        title="Reliability on the test rows",
    )
    # The planted model's own probabilities: the best any model can score.
    optimum = evaluate_predictions(
        test_part.labels, test_part.probabilities, "binary"
    )
    exported = export_for_serving(
        result.model, os.path.join(output, "export"), model_name="demo"
    )
    report = {
        "rows": {
            "train": len(train_part.labels),
            "validation": len(valid_part.labels),
            "test": len(test_part.labels),
        },
        "test_auc": test_metrics["auc"],
        "test_auc_std": test_metrics["auc_std"],
        "test_logloss": test_metrics["logloss"],
        "test_ece": test_metrics["ece"],
        "optimum_auc": optimum["auc"],
        "optimum_logloss": optimum["logloss"],
        "epochs_run": len(result.history["loss"]),
        "parity_ok": exported.report is not None and exported.report.ok,
        "seconds": {
            "data": round(generated - start, 1),
            "train": round(trained - generated, 1),
            "total": round(time.time() - start, 1),
        },
        "artifacts": {
            "keras": os.path.join(output, "model", "model.keras"),
            "saved_model": exported.saved_model,
            "onnx": exported.onnx,
        },
    }
    _write_report(output, report, result.history, exported.report)
    return report


def _prepare(output: str) -> None:
    """Empties `output` if it is a previous demo; refuses other folders."""
    if os.path.exists(output):
        if not os.path.exists(os.path.join(output, MARKER)) and os.listdir(
            output
        ):
            raise FileExistsError(
                f"{output!r} exists and is not a tffm demo folder; choose "
                "another --output."
            )
        shutil.rmtree(output)
    os.makedirs(output)
    with open(os.path.join(output, MARKER), "w") as f:
        f.write("Written by `tffm demo`; replaced on the next run.\n")


def _write_report(
    output: str,
    report: dict[str, Any],
    history: dict[str, list[float]],
    parity: Any,
) -> None:
    import matplotlib  # optional: the [data] extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # optional: the [data] extra

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["loss"], "o-", label="train")
    ax_loss.plot(epochs, history["val_loss"], "o-", label="validation")
    ax_loss.axhline(
        report["optimum_logloss"],
        ls="--",
        c="gray",
        label="planted optimum (test)",
    )
    ax_loss.set(xlabel="epoch", ylabel="logloss", title="Loss")
    ax_loss.legend()
    ax_auc.plot(epochs, history["auc"], "o-", label="train")
    ax_auc.plot(epochs, history["val_auc"], "o-", label="validation")
    ax_auc.axhline(
        report["optimum_auc"], ls="--", c="gray", label="planted optimum (test)"
    )
    ax_auc.set(xlabel="epoch", ylabel="AUC", title="AUC")
    ax_auc.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(output, "training_curves.png"), dpi=100)
    plt.close(fig)
    gap = report["optimum_auc"] - report["test_auc"]
    lines = [
        "# tffm demo report",
        "",
        "DeepFM trained with `model.fit` on synthetic CTR data drawn from a "
        "planted factorization machine, so the best achievable AUC is known.",
        "",
        "| | train | validation | test |",
        "| --- | ---: | ---: | ---: |",
        f"| rows | {report['rows']['train']:,} | "
        f"{report['rows']['validation']:,} | {report['rows']['test']:,} |",
        "",
        "| metric (test) | DeepFM | planted optimum | gap |",
        "| --- | ---: | ---: | ---: |",
        f"| AUC | {report['test_auc']:.4f} ± {report['test_auc_std']:.4f} | "
        f"{report['optimum_auc']:.4f} | {gap:.4f} |",
        f"| logloss | {report['test_logloss']:.4f} | "
        f"{report['optimum_logloss']:.4f} | "
        f"{report['test_logloss'] - report['optimum_logloss']:.4f} |",
        f"| expected calibration error | {report['test_ece']:.4f} | | |",
        "",
        f"Epochs run: {report['epochs_run']}. Time: "
        f"{report['seconds']['total']} s (training "
        f"{report['seconds']['train']} s).",
        "",
        "![training curves](training_curves.png)",
        "![reliability](calibration.png)",
        "",
        "## Export",
        "",
        f"- Keras: `{report['artifacts']['keras']}`",
        f"- SavedModel (TF Serving): `{report['artifacts']['saved_model']}`",
        f"- ONNX (raw inputs): `{report['artifacts']['onnx']}`",
        "",
        parity.table() if parity is not None else "Parity not checked.",
        "",
    ]
    with open(os.path.join(output, "report.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(output, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
