import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import tffm
from tffm import testing
from tffm.cli import main
from tffm.encoder import KerasPredictor
from tffm.metrics import log_loss
from tffm.metrics import roc_auc
from tffm.train.defaults import AUTO

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the CLI trains with the TensorFlow backend",
)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def write_planted_csv(path, rows, seed):

    data = tffm.synthetic.make_planted_ctr(
        rows, num_categorical=3, vocabulary_size=10, seed=seed
    )
    data.to_csv(path)
    return data


CONFIG = {
    "format": "csv",
    "label": "label",
    "columns": {
        "c0": {"kind": "categorical"},
        "c1": {"kind": "categorical", "min_frequency": 2},
        "c2": {"kind": "categorical", "hash_bins": 64},
        "n0": {"kind": "numeric", "transform": "log1p"},
        "n1": {"kind": "numeric"},
        "tags": {"kind": "list", "max_len": 4},
    },
    "hidden_units": [16],
    "embedding_dim": 4,
    "epochs": 2,
    "batch_size": 256,
    "learning_rate": 0.01,
}

# `config.json`'s columns: as given, with a list's defaults written out.
WRITTEN_COLUMNS = {
    **CONFIG["columns"],
    "tags": {**CONFIG["columns"]["tags"], "combiner": "sum"},
}


class TrainCliTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_train_evaluate_predict(self):
        train_csv = str(self.tmp / "train.csv")
        test_csv = str(self.tmp / "test.csv")
        write_planted_csv(train_csv, 3000, seed=1)
        test = write_planted_csv(test_csv, 800, seed=2)
        config = self.tmp / "config.json"
        config.write_text(json.dumps(CONFIG))
        out = str(self.tmp / "model")
        code = main(
            [
                "train",
                "--data",
                train_csv,
                "--config",
                str(config),
                "--output",
                out,
                "--model",
                "deepfm",
                "--epochs",
                "3",
                "--ema",
                "0.9",
            ]
        )
        self.assertEqual(code, 0)
        for name in (
            "model.keras",
            "config.json",
            "history.json",
            "metrics.json",
            "vocab/c0.txt",
            "checkpoints/best.keras",
        ):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        written = json.load(open(os.path.join(out, "config.json")))
        self.assertIs(written["refit"], False)  # binary: no refit by default
        self.assertNotIn("refit_epochs", json.load(open(out + "/metrics.json")))
        self.assertEqual(written["epochs"], 3)  # the flag won over the file
        self.assertEqual(written["ema"], 0.9)
        # Precise BN (the default) ran on the DeepFM's batch norm.
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        self.assertRegex(
            metrics["batch_norm_statistics"], r"recomputed from \d+ training"
        )
        self.assertEqual(written["columns"], WRITTEN_COLUMNS)
        vocab = open(os.path.join(out, "vocab", "c0.txt")).read().split()
        self.assertEqual(sorted(vocab), sorted(f"c0_{k}" for k in range(10)))

        preds = str(self.tmp / "preds.csv")
        self.assertEqual(
            main(
                [
                    "predict",
                    "--model",
                    out,
                    "--data",
                    test_csv,
                    "--output",
                    preds,
                ]
            ),
            0,
        )
        table = np.genfromtxt(preds, delimiter=",", names=True)
        self.assertEqual(len(table), 800)
        self.assertAllEqual(table["label"], test.labels)
        # Probabilities, and the logit is their log-odds.
        p = table["probability"]
        self.assertTrue(((p > 0) & (p < 1)).all())
        self.assertAllClose(
            np.log(p / (1 - p)), table["logit"], tol=(1e-4, 1e-4)
        )

        # The ONNX artifact scores the same rows the same way.
        exported = str(self.tmp / "exported")
        self.assertEqual(
            main(
                [
                    "export",
                    "--model",
                    os.path.join(out, "model.keras"),
                    "--output",
                    exported,
                    "--name",
                    "ctr",
                ]
            ),
            0,
        )
        onnx_preds = str(self.tmp / "onnx.parquet")
        self.assertEqual(
            main(
                [
                    "predict",
                    "--model",
                    out,
                    "--data",
                    test_csv,
                    "--output",
                    onnx_preds,
                    "--artifact",
                    os.path.join(exported, "onnx", "ctr-1.onnx"),
                ]
            ),
            0,
        )
        import pyarrow.parquet as pq

        onnx_table = pq.read_table(onnx_preds).to_pydict()
        self.assertAllClose(onnx_table["probability"], p, tol=(1e-5, 1e-4))

    def test_evaluate_prints_metrics(self):
        train_csv = str(self.tmp / "train.csv")
        write_planted_csv(train_csv, 2000, seed=3)
        config = self.tmp / "config.json"
        config.write_text(json.dumps(dict(CONFIG, model="fm")))
        out = str(self.tmp / "fm")
        self.assertEqual(
            main(
                [
                    "train",
                    "--data",
                    train_csv,
                    "--config",
                    str(config),
                    "--output",
                    out,
                    "--refit",
                ]
            ),
            0,
        )
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        self.assertGreater(metrics["auc"], 0.6)
        self.assertGreater(metrics["auc_std"], 0.0)
        # With --refit, metrics.json describes the saved model (the refit
        # one) and keeps the selection model's holdout figures apart.
        self.assertIn("also trained on", metrics["evaluated_on"])
        self.assertIn("selection", metrics)
        self.assertTrue(
            os.path.exists(os.path.join(out, "checkpoints", "selection.keras"))
        )
        # The refit model trained on the holdout too: its Platt scaling is
        # the one the selection model fitted there, not one of its own.
        fitted = metrics["selection"]["calibration_fit"]
        self.assertEqual(
            metrics["calibration_fit"]["fitted_on"],
            "holdout, by the selection model",
        )
        self.assertNotEqual((fitted["scale"], fitted["shift"]), (1.0, 0.0))
        import tffm

        saved = tffm.load_model(os.path.join(out, "model.keras"))
        self.assertAllClose(
            [
                float(saved.get_layer("logit").scale),
                float(saved.get_layer("logit").shift),
            ],
            [fitted["scale"], fitted["shift"]],
            tol=(1e-7, 1e-6),
        )
        test_csv = str(self.tmp / "test.csv")
        test = write_planted_csv(test_csv, 600, seed=5)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(["evaluate", "--model", out, "--data", test_csv])
        self.assertEqual(code, 0)
        shown = json.loads(printed.getvalue())
        # The printed AUC is the saved model's on these rows, computed here
        # independently from its raw-value predictions.
        model = tffm.load_model(os.path.join(out, "model.keras"))
        p = KerasPredictor(model).predict(test.raw)["probability"][:, 0]
        self.assertEqual(shown["rows"], 600)
        self.assertAllClose(
            shown["auc"], roc_auc(test.labels, p), tol=(1e-6, 0)
        )
        self.assertAllClose(
            shown["logloss"], log_loss(test.labels, p), tol=(1e-5, 1e-5)
        )

    def test_train_warns_when_a_linear_model_scores_higher(self):
        train_csv = str(self.tmp / "train.csv")
        write_planted_csv(train_csv, 1000, seed=1)
        config = self.tmp / "config.json"
        config.write_text(json.dumps(CONFIG))
        out = str(self.tmp / "model")
        stderr = io.StringIO()
        with (
            contextlib.redirect_stderr(stderr),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            code = main(
                ["train", "--data", train_csv, "--config", str(config)]
                + ["--output", out, "--model", "deepfm", "--epochs", "1"]
                # One epoch at this rate learns nothing.
                + ["--learning-rate", "1e-7", "--no-calibrate"]
            )
        self.assertEqual(code, 0)
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        record = metrics["linear_baseline"]
        self.assertTrue(record["below"])
        self.assertEqual(record["rows"], metrics["rows"])
        self.assertAllClose(record["model"], metrics["auc"])
        self.assertGreater(record["linear"], record["model"])
        self.assertIn("--model lr", record["advice"][0])
        # Said through the log, and again as the run's last words.
        text = stderr.getvalue()
        self.assertIn("tffm train: the chosen epoch's validation auc", text)
        self.assertTrue(
            text.rstrip().splitlines()[-1].startswith("Warning: the chosen")
        )

    def test_refit_none_refits_only_small_data_with_a_holdout(self):
        from unittest import mock

        from tffm.train.config import TrainConfig
        from tffm.train.pipeline import train

        train_csv = str(self.tmp / "train.csv")
        valid_csv = str(self.tmp / "valid.csv")
        write_planted_csv(train_csv, 1000, seed=6)
        write_planted_csv(valid_csv, 300, seed=7)
        base = dict(CONFIG, model="fm", epochs=1, data=[train_csv])
        # AUTO (by the data's size) is regression's default; binary models
        # do not refit unless told.
        for model in ("lr", "fm", "deepfm"):
            config = TrainConfig(**dict(base, task="regression", model=model))
            self.assertIs(config.refit, AUTO, model)
        self.assertIs(TrainConfig(**dict(base, model="deepfm")).refit, False)
        self.assertIs(TrainConfig(**base).refit, False)
        cases = [
            # (what changes, rows allowed, refit done)
            # 1,000 rows, 100 of them the holdout: 900 training rows.
            # Regression's AUTO: refit when the rows left are few enough.
            ({"refit": AUTO, "task": "regression"}, 900, True),
            ({"refit": AUTO, "task": "regression"}, 899, False),
            # No holdout to give back.
            (
                {
                    "refit": AUTO,
                    "task": "regression",
                    "validation_data": [valid_csv],
                },
                10**6,
                False,
            ),
            # A binary task's AUTO is its default: no refit.
            ({"refit": AUTO}, 900, False),
            ({}, 10**6, False),
        ]
        for i, (change, limit, expected) in enumerate(cases):
            out = str(self.tmp / f"run{i}")
            with mock.patch("tffm.train.defaults.REFIT_MAX_ROWS", limit):
                train(TrainConfig(**dict(base, **change)), out, verbose=0)
            metrics = json.load(open(os.path.join(out, "metrics.json")))
            self.assertEqual("refit_epochs" in metrics, expected, change)
            self.assertEqual(
                os.path.exists(os.path.join(out, "checkpoints", "best.keras")),
                not expected,
                change,
            )

    def test_malformed_data_fails_with_file_and_line(self):
        path = self.tmp / "bad.csv"
        write_planted_csv(str(path), 50, seed=4)
        lines = path.read_text().splitlines()
        lines[7] = lines[7].replace(",", ";", 1)  # one column short
        path.write_text("\n".join(lines) + "\n")
        config = self.tmp / "config.json"
        config.write_text(json.dumps(CONFIG))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tffm.cli",
                "train",
                "--data",
                str(path),
                "--config",
                str(config),
                "--output",
                str(self.tmp / "m"),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        self.assertEqual(done.returncode, 2, done.stderr[-2000:])
        self.assertIn("bad.csv:8: expected 7 columns, got 6", done.stderr)

    def test_every_command_has_help(self):
        for command in (
            "demo",
            "train",
            "evaluate",
            "predict",
            "export",
            "verify",
        ):
            with self.assertRaises(SystemExit) as exit_info:
                main([command, "--help"])
            self.assertEqual(exit_info.exception.code, 0)


@pytest.mark.slow
class DemoTest(testing.TestCase):
    def test_demo_reaches_planted_optimum_and_reruns_cleanly(self):
        import tempfile

        def demo(cwd, *extra):
            done = subprocess.run(
                [sys.executable, "-m", "tffm.cli", "demo", *extra],
                cwd=cwd,
                env=dict(os.environ, PYTHONPATH=ROOT),
                capture_output=True,
                text=True,
                timeout=900,
            )
            self.assertEqual(done.returncode, 0, done.stderr[-3000:])
            out = os.path.join(cwd, "tffm-demo")
            return out, json.load(open(os.path.join(out, "report.json")))

        with tempfile.TemporaryDirectory() as cwd:
            out, report = demo(cwd)
            self.assertTrue(report["parity_ok"])
            self.assertLess(report["optimum_auc"] - report["test_auc"], 0.01)
            for name in (
                "report.md",
                "training_curves.png",
                "model/model.keras",
                "export/models.config",
            ):
                self.assertTrue(os.path.exists(os.path.join(out, name)), name)
            text = open(os.path.join(out, "report.md")).read()
            self.assertIn("planted optimum", text)
            self.assertIn("| edge-10000 | onnx | probability |", text)
            # A second (small) run replaces the first cleanly.
            open(os.path.join(out, "model", "stale.txt"), "w").close()
            out, report = demo(cwd, "--rows", "20000", "--epochs", "1")
            self.assertEqual(os.listdir(cwd), ["tffm-demo"])
            self.assertEqual(report["rows"]["train"], 16000)
            self.assertFalse(
                os.path.exists(os.path.join(out, "model", "stale.txt"))
            )

    def test_demo_refuses_foreign_folder(self):
        import tempfile

        from tffm.cli.demo import run_demo

        with tempfile.TemporaryDirectory() as tmp:
            open(os.path.join(tmp, "precious.txt"), "w").close()
            with self.assertRaisesRegex(FileExistsError, "not a tffm demo"):
                run_demo(tmp)
            self.assertTrue(os.path.exists(os.path.join(tmp, "precious.txt")))


class MissingExtrasTest(testing.TestCase):
    def run_blocked(self, blocked, argv):
        code = (
            "import sys\n"
            f"for name in {blocked!r}:\n"
            "    sys.modules[name] = None\n"
            "from tffm.cli import main\n"
            f"sys.exit(main({argv!r}))\n"
        )
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    def test_export_names_the_extra_before_any_work(self):
        done = self.run_blocked(
            ["tf2onnx"],
            ["export", "--model", "missing.keras", "--output", "x"],
        )
        self.assertEqual(done.returncode, 2, done.stderr)
        # The missing package is named before the model file is looked at.
        self.assertIn("tf2onnx", done.stderr)
        self.assertIn("pip install 'tffm-keras[export]'", done.stderr)
        self.assertNotIn("missing.keras", done.stderr)

    def test_demo_names_the_extra_before_any_work(self):
        done = self.run_blocked(
            ["tensorflow_serving", "matplotlib"], ["demo", "--output", "d"]
        )
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("tffm-keras[data,export]", done.stderr)
        self.assertFalse(os.path.exists(os.path.join(ROOT, "d")))


class EncodedTrainingTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_another_model_on_an_encoding_takes_its_own_defaults(self):
        from tffm.cli.flags import encoding_base
        from tffm.train.config import TrainConfig

        # What `tffm encode` writes without a model: the FM's resolved
        # options, one of them (embedding_dim) chosen by the user.
        fm = TrainConfig(format="criteo", model="fm")
        deepfm = TrainConfig(format="criteo", model="deepfm")
        encoding = TrainConfig(**dict(CONFIG, embedding_dim=7), data=["x.csv"])
        encoding = dataclasses.replace(encoding, learning_rate=fm.learning_rate)
        path = self.tmp / "config.json"
        path.write_text(json.dumps(dict(encoding.to_dict(), model="fm")))
        values = encoding_base(
            str(path), {"model": "deepfm", "format": "encoded"}
        )
        config = TrainConfig.from_dict(values)
        self.assertEqual(config.model, "deepfm")
        self.assertEqual(config.learning_rate, deepfm.learning_rate)
        self.assertEqual(config.ema, deepfm.ema)
        self.assertEqual(config.monitor, deepfm.monitor)
        self.assertNotEqual(fm.monitor, deepfm.monitor)
        self.assertEqual(config.embedding_dim, 7)  # not a default: kept
        # The vocabulary's cut is the encoding's, whatever the model.
        self.assertEqual(config.min_frequency, encoding.min_frequency)
        self.assertNotEqual(fm.learning_rate, deepfm.learning_rate)
        # The same model keeps everything the encoding says.
        same = TrainConfig.from_dict(
            encoding_base(str(path), {"format": "encoded"})
        )
        self.assertEqual(same.learning_rate, fm.learning_rate)
        self.assertEqual(same.monitor, fm.monitor)

    def test_encode_once_then_train_and_evaluate_on_raw_files(self):
        import tffm.data

        train_csv = str(self.tmp / "train.csv")
        write_planted_csv(train_csv, 2000, seed=6)
        config = self.tmp / "config.json"
        config.write_text(json.dumps(CONFIG))
        encoded = str(self.tmp / "encoded")
        self.assertEqual(
            main(
                [
                    "encode",
                    "--data",
                    train_csv,
                    "--config",
                    str(config),
                    "--output",
                    encoded,
                ]
            ),
            0,
        )
        # Every 10th line is the holdout: 200 of the 2,000 rows.
        holdout = tffm.data.EncodedData(os.path.join(encoded, "holdout"))
        train = tffm.data.EncodedData(os.path.join(encoded, "train"))
        self.assertEqual((train.num_rows, holdout.num_rows), (1800, 200))
        out = str(self.tmp / "model")
        self.assertEqual(
            main(
                [
                    "train",
                    "--format",
                    "encoded",
                    "--data",
                    encoded,
                    "--output",
                    out,
                    "--epochs",
                    "2",
                    "--hidden-units",
                    "16",
                ]
            ),
            0,
        )
        written = json.load(open(os.path.join(out, "config.json")))
        # The model folder reads raw files as the encoding did.
        self.assertEqual(written["format"], "csv")
        self.assertEqual(written["columns"], WRITTEN_COLUMNS)
        self.assertEqual(written["hidden_units"], [16])
        # The holdout, as raw text (header and every 10th line): scored
        # from raw values, the saved model gives what `tffm train` measured
        # on the encoded holdout rows.
        lines = open(train_csv).read().splitlines()
        holdout_csv = self.tmp / "holdout.csv"
        holdout_csv.write_text("\n".join([lines[0]] + lines[9::10]) + "\n")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(
                ["evaluate", "--model", out, "--data", str(holdout_csv)]
            )
        self.assertEqual(code, 0)
        shown = json.loads(printed.getvalue())
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        self.assertEqual(shown["rows"], 200)
        for name in ("auc", "logloss"):
            self.assertAllClose(shown[name], metrics[name], tol=(1e-5, 1e-5))
