import contextlib
import dataclasses
import io
import json
import os

import keras
import pytest

import tffm
from tffm import testing
from tffm.cli import main
from tffm.train.config import TrainConfig

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the CLI trains with the TensorFlow backend",
)


class TuneTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_search_on_the_holdout_writes_a_trainable_best_config(self):
        pytest.importorskip("keras_tuner")

        data = tffm.synthetic.make_planted_ctr(
            1500, num_categorical=2, vocabulary_size=8, seed=3
        )
        data.to_csv(str(self.tmp / "train.csv"))
        config = {
            "format": "csv",
            "label": "label",
            "model": "fm",
            "epochs": 1,
            "columns": {
                "c0": {"kind": "categorical"},
                "c1": {"kind": "categorical", "hash_bins": 16},
                "n0": {"kind": "numeric"},
                "n1": {"kind": "numeric"},
                "tags": {"kind": "list", "max_len": 4},
            },
        }
        (self.tmp / "config.json").write_text(json.dumps(config))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = main(
                [
                    "tune",
                    "--data",
                    str(self.tmp / "train.csv"),
                    "--config",
                    str(self.tmp / "config.json"),
                    "--output",
                    str(self.tmp / "tune"),
                    "--max-trials",
                    "3",
                    "--algorithm",
                    "random",
                ]
            )
        self.assertEqual(code, 0)
        trials = [
            json.loads(line)
            for line in open(self.tmp / "tune" / "trials.jsonl")
        ]
        self.assertLen(trials, 3)
        scores = [t["score"] for t in trials]
        self.assertEqual(scores, sorted(scores, reverse=True))  # best first
        # One progress line per trial, then the table.
        self.assertEqual(printed.getvalue().count("trial "), 3)
        # Trials are ranked on the monitor `tffm train` would stop on.
        monitor = TrainConfig(format="criteo", model="fm").monitor
        self.assertIn(f"| rank | {monitor} |", printed.getvalue())
        best = TrainConfig.from_file(
            str(self.tmp / "tune" / "best_config.json")
        )
        for name in (
            "embedding_dim",
            "learning_rate",
            "embeddings_l2",
            "linear_l2",
            "batch_size",
            "ema",
        ):
            self.assertEqual(getattr(best, name), trials[0][name])
        # The fixed options, with a list's defaults written out.
        tags = {**config["columns"]["tags"], "combiner": "sum"}
        self.assertEqual(best.columns, {**config["columns"], "tags": tags})
        code = main(
            [
                "train",
                "--config",
                str(self.tmp / "tune" / "best_config.json"),
                "--output",
                str(self.tmp / "model"),
            ]
        )
        self.assertEqual(code, 0)
        self.assertTrue(os.path.exists(self.tmp / "model" / "model.keras"))

    def test_time_budget_stops_new_trials(self):
        pytest.importorskip("keras_tuner")

        data = tffm.synthetic.make_planted_ctr(
            600, num_categorical=2, vocabulary_size=8, seed=4
        )
        data.to_csv(str(self.tmp / "train.csv"))
        config = TrainConfig(
            data=[str(self.tmp / "train.csv")],
            format="csv",
            model="lr",
            epochs=1,
            columns={"c0": {"kind": "categorical"}, "n0": {"kind": "numeric"}},
        )
        from tffm.train.tuning import tune

        lines = []
        result = tune(
            config,
            str(self.tmp / "budget"),
            max_trials=50,
            time_budget=0.0,
            algorithm="random",
            report=lines.append,
        )
        self.assertLen(result.trials, 1)  # the first trial, then no more
        self.assertLen(lines, 1)

    def test_lenient_reports_the_skipped_rows_once(self):
        pytest.importorskip("keras_tuner")

        data = tffm.synthetic.make_planted_ctr(
            600, num_categorical=2, vocabulary_size=8, seed=5
        )
        path = str(self.tmp / "train.csv")
        data.to_csv(path)
        lines = open(path).read().splitlines(keepends=True)
        # Line 3 is a training row, line 10 a holdout row (every 10th).
        lines[2] = "not,enough,columns\n"
        lines[9] = "still,not,enough\n"
        open(path, "w").writelines(lines)
        config = TrainConfig(
            data=[path],
            format="csv",
            model="lr",
            epochs=1,
            lenient=True,
            columns={"c0": {"kind": "categorical"}, "n0": {"kind": "numeric"}},
        )
        from tffm.train.tuning import tune

        result = tune(
            config,
            str(self.tmp / "lenient"),
            max_trials=2,
            algorithm="random",
            report=lambda _: None,
        )
        skipped = result.skipped_rows
        self.assertEqual(skipped["training"]["skipped"], 1)
        self.assertEqual(skipped["validation"]["skipped"], 1)
        self.assertIn("train.csv:3", str(skipped["training"]["examples"]))
        self.assertIn("train.csv:10", str(skipped["validation"]["examples"]))


class SearchSpaceTest(testing.TestCase):
    def test_every_searched_value_is_a_valid_config(self):
        # A name TrainConfig lacks, or a value its checks refuse, would
        # only fail mid-search, on the trial that drew it.
        from tffm.train.tuning import search_space

        base = TrainConfig(data=["x.csv"], format="criteo")
        for model in ("lr", "fm", "deepfm"):
            for name, _, values in search_space(model):
                for value in values:
                    if name == "hidden_units":
                        value = [int(u) for u in value.split(",")]
                    config = dataclasses.replace(
                        base, model=model, **{name: value}
                    )
                    self.assertEqual(getattr(config, name), value)

    def test_the_deepfm_searches_its_dnn_and_the_table_penalty(self):
        from tffm.train.tuning import search_space

        names = {name for name, _, _ in search_space("deepfm")}
        fm_names = {name for name, _, _ in search_space("fm")}
        self.assertEqual(
            names - fm_names,
            {"hidden_units", "dropout", "batch_norm", "kernel_l2", "table_l2"},
        )
