import dataclasses
import gzip
import json
import os
import tempfile

from absl.testing import parameterized

from tffm import testing
from tffm.features import table_rows
from tffm.train.build import build_features
from tffm.train.config import TrainConfig
from tffm.train.defaults import AUTO
from tffm.train.defaults import AUTO_DEFAULTS
from tffm.train.defaults import auto_defaults
from tffm.train.inputs import resolve_layout

AUTO_FIELDS = [
    f.name for f in dataclasses.fields(TrainConfig) if f.default is AUTO
]


class AutoDefaultsTest(testing.TestCase):
    @parameterized.parameters(*AUTO_DEFAULTS)
    def test_every_auto_option_resolves_by_task_and_model(self, task, model):
        config = TrainConfig(format="criteo", task=task, model=model)
        expected = auto_defaults(task, model)
        self.assertCountEqual(expected, AUTO_FIELDS)
        for name in AUTO_FIELDS:
            self.assertEqual(getattr(config, name), expected[name], name)
        # What goes by the data stays AUTO until `for_data` decides it.
        decided = config.for_data(training_rows=10, table_rows=10)
        for name in AUTO_FIELDS:
            self.assertIsNot(getattr(decided, name), AUTO, name)

    def test_ema_averages_about_one_epoch_up_to_the_models_momentum(self):
        deepfm = TrainConfig(format="criteo", model="deepfm")
        self.assertIs(deepfm.ema, AUTO)
        cases = [
            # (training rows, batch, momentum): ceil(rows / batch) steps.
            (7200, 512, 1 - 1 / 15),
            (5000, 512, 1 - 1 / 10),
            (100_000, 512, 1 - 1 / 196),
            (200_000, 512, 0.995),  # 391 steps: 1 - 1/391 > 0.995
            (100_000, 1024, 1 - 1 / 98),
            (1, 512, 0.5),  # one step: the average of two
        ]
        for rows, batch, expected in cases:
            config = dataclasses.replace(deepfm, batch_size=batch)
            decided = config.for_data(training_rows=rows, table_rows=10)
            self.assertAllClose(decided.ema, expected, msg=f"{rows}/{batch}")
        regression = TrainConfig(format="criteo", task="regression")
        decided = regression.for_data(training_rows=80_000, table_rows=10)
        self.assertEqual(decided.ema, 0.998)  # 625 steps of 128 rows
        decided = regression.for_data(training_rows=5_000, table_rows=10)
        self.assertAllClose(decided.ema, 1 - 1 / 40)
        # Models without an average, and a value given, stay as they are.
        fm = TrainConfig(format="criteo", model="fm")
        self.assertEqual(fm.for_data(training_rows=10, table_rows=10).ema, 0)
        given = TrainConfig(format="criteo", model="deepfm", ema=0.9)
        self.assertEqual(
            given.for_data(training_rows=10, table_rows=1).ema, 0.9
        )

    def test_the_model_is_fm_unless_given(self):
        self.assertEqual(TrainConfig(format="criteo").model, "fm")
        regression = TrainConfig(format="criteo", task="regression")
        self.assertEqual(regression.model, "fm")
        self.assertEqual(
            regression.embedding_dim,
            AUTO_DEFAULTS[("regression", "fm")]["embedding_dim"],
        )
        given = TrainConfig(format="criteo", task="regression", model="deepfm")
        self.assertEqual(given.model, "deepfm")
        self.assertEqual(TrainConfig.from_dict(given.to_dict()).model, "deepfm")

    def test_explicit_values_win_and_lists_are_not_shared(self):
        config = TrainConfig(format="criteo", embedding_dim=3, epochs=2)
        self.assertEqual((config.embedding_dim, config.epochs), (3, 2))
        other = TrainConfig(format="criteo")
        config.hidden_units.append(7)
        self.assertNotIn(7, other.hidden_units)
        self.assertNotIn(7, TrainConfig(format="criteo").hidden_units)

    def test_regression_fm_and_binary_fm_differ_where_the_table_says(self):
        binary = TrainConfig(format="criteo", model="fm")
        regression = TrainConfig(format="criteo", model="fm", task="regression")
        self.assertEqual(
            binary.embeddings_l2,
            AUTO_DEFAULTS[("binary", "fm")]["embeddings_l2"],
        )
        self.assertEqual(
            regression.embedding_dim,
            auto_defaults("regression", "fm")["embedding_dim"],
        )
        # The schedule goes by task: regression keeps a constant rate.
        self.assertEqual(binary.schedule, "plateau")
        self.assertEqual(regression.schedule, "constant")

    def test_the_monitor_goes_by_task_and_model(self):
        def monitor(**kwargs):
            return TrainConfig(format="criteo", **kwargs).monitor

        # The binary FM chooses its epoch on AUC - logloss; the other
        # binary models on AUC; regression on the RMSE.
        self.assertEqual(monitor(model="fm"), "val_auc_logloss")
        self.assertEqual(monitor(model="deepfm"), "val_auc")
        self.assertEqual(monitor(model="lr"), "val_auc")
        for model in ("fm", "deepfm", "lr"):
            self.assertEqual(
                monitor(model=model, task="regression"), "val_rmse"
            )
        self.assertEqual(monitor(model="fm", monitor="val_auc"), "val_auc")
        # A config written before the monitor went by model says null:
        # the task's monitor, as it was then.
        old = TrainConfig.from_dict({"format": "criteo", "monitor": None})
        self.assertEqual(old.monitor, "val_auc")

    def test_linear_l2_reaches_the_model_and_frees_regression_biases(self):
        from tffm.features import Categorical
        from tffm.train.build import build_model

        features = [Categorical("user", vocabulary=["a", "b"])]

        def embedding(config):
            options = config.for_data(
                training_rows=10, table_rows=table_rows(features)
            ).model_options()
            return build_model(options, features).get_layer("feature_embedding")

        layers = {}
        for task in ("binary", "regression"):
            config = TrainConfig(format="criteo", model="fm", task=task)
            layers[task] = embedding(config)
        # Binary: the rows' `embeddings_l2` on their biases too.
        self.assertEqual(
            layers["binary"].linear_l2,
            AUTO_DEFAULTS[("binary", "fm")]["embeddings_l2"],
        )
        self.assertEqual(layers["regression"].linear_l2, 0.0)
        self.assertGreater(layers["regression"].embeddings_l2, 0.0)
        given = TrainConfig(
            format="criteo", model="deepfm", task="regression", linear_l2=0.2
        )
        self.assertEqual(embedding(given).linear_l2, 0.2)

    def test_the_binary_deepfm_takes_a_table_l2_below_lazy_rows(self):
        from tffm.constants import LAZY_ROWS
        from tffm.features import Categorical
        from tffm.train.build import build_model
        from tffm.train.defaults import table_l2_by_size

        features = [
            Categorical("user", vocabulary=["a", "b"]),
            Categorical("item", hash_bins=10),
        ]

        def table_l2(**kwargs):
            config = TrainConfig.from_dict({"format": "criteo", **kwargs})
            options = config.for_data(
                training_rows=10, table_rows=table_rows(features)
            ).model_options()
            return (
                build_model(options, features)
                .get_layer("feature_embedding")
                .table_l2
            )

        # The binary DeepFM's default goes by the table's size: 1e-3 on a
        # table updated densely anyway; none where updates are row-wise.
        deepfm = TrainConfig(format="criteo", model="deepfm")
        self.assertIs(deepfm.table_l2, AUTO)
        with self.assertRaisesRegex(ValueError, "table_l2.*for_data"):
            deepfm.model_options()
        self.assertEqual(table_l2(model="deepfm"), 1e-3)
        self.assertEqual(table_l2_by_size(LAZY_ROWS - 1), 1e-3)
        self.assertEqual(table_l2_by_size(LAZY_ROWS), 0.0)
        big = deepfm.for_data(training_rows=10, table_rows=LAZY_ROWS)
        self.assertEqual(big.table_l2, 0.0)
        # The other models, regression's DeepFM and a given value keep theirs.
        self.assertEqual(table_l2(model="fm"), 0.0)
        self.assertEqual(table_l2(model="lr"), 0.0)
        self.assertEqual(table_l2(model="deepfm", task="regression"), 0.0)
        self.assertEqual(table_l2(model="deepfm", table_l2=0.0), 0.0)
        # "auto" is the model's default; a file from before "auto" says null.
        self.assertEqual(table_l2(model="fm", table_l2="auto"), 0.0)
        self.assertEqual(table_l2(model="deepfm", table_l2="auto"), 1e-3)
        self.assertEqual(table_l2(model="deepfm", table_l2=None), 1e-3)
        # A parameter-server cluster shards its tables to be large.
        cluster = TrainConfig(
            format="criteo", model="deepfm", distribution="parameter-server"
        )
        self.assertEqual(cluster.table_l2, 0.0)

    def test_the_config_file_form_holds_plain_values(self):
        values = TrainConfig(format="criteo", model="fm").to_dict()
        text = json.dumps(values)  # AUTO would not serialize
        again = TrainConfig.from_dict(json.loads(text))
        self.assertEqual(again, TrainConfig(format="criteo", model="fm"))

    def test_a_bad_auto_option_value_still_fails_by_name(self):
        with self.assertRaisesRegex(ValueError, "epochs"):
            TrainConfig.from_dict({"format": "criteo", "epochs": 1.5})

    def test_refit_without_a_holdout_to_give_back_is_refused(self):
        # Regression's default (AUTO) means "when there is a small holdout".
        validated = TrainConfig(
            format="criteo", task="regression", validation_data=["v"]
        )
        self.assertIs(validated.refit, AUTO)
        self.assertFalse(
            validated.for_data(training_rows=10, table_rows=10).refit
        )
        held_out = TrainConfig(format="criteo", task="regression")
        self.assertTrue(
            held_out.for_data(training_rows=10, table_rows=10).refit
        )
        with self.assertRaisesRegex(ValueError, "refit.*validation_data"):
            TrainConfig(format="criteo", refit=True, validation_data=["v"])
        with self.assertRaisesRegex(ValueError, "refit.*encoded"):
            TrainConfig(format="encoded", refit=True)


class LibsvmLayoutTest(testing.TestCase):
    def write(self, lines, name="d.libfm.gz"):
        self.tmp = tempfile.mkdtemp()
        path = os.path.join(self.tmp, name)
        with gzip.open(path, "wt") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def test_one_hot_rows_name_fields_and_plus_minus_labels_map(self):
        path = self.write(
            ["1 3:1 10:1 20:1", "-1 4:1 11:1 21:1", "", "1 3:1 12:1 22:1"]
        )
        with self.assertLogs("tffm", level="INFO") as logs:
            config = resolve_layout(TrainConfig(data=[path], format="libsvm"))
        said = [record.getMessage() for record in logs.records]
        self.assertEqual(config.fields, ["field0", "field1", "field2"])
        self.assertTrue(config.binary_labels)
        self.assertEqual(len(said), 2)
        self.assertIn("field0..field2", said[0])
        self.assertIn("-1 / +1", said[1])

    def test_zero_one_labels_and_regression_keep_their_labels(self):
        path = self.write(["1 3:1 10:1", "0 4:1 11:1"])
        config = resolve_layout(TrainConfig(data=[path], format="libsvm"))
        self.assertFalse(config.binary_labels)
        path = self.write(["1 3:1 10:1", "-1 4:1 11:1"])
        config = resolve_layout(
            TrainConfig(data=[path], format="libsvm", task="regression"),
        )
        self.assertFalse(config.binary_labels)
        self.assertEqual(config.fields, ["field0", "field1"])

    @parameterized.named_parameters(
        ("ragged", ["1 3:1 10:1", "0 4:1"]),
        ("weighted", ["1 3:0.5 10:1", "0 4:1 11:1"]),
        ("ffm", ["1 0:3:1 1:10:1", "0 0:4:1 1:11:1"]),
    )
    def test_other_layouts_are_left_to_the_flags(self, lines):
        path = self.write(lines)
        with self.assertNoLogs("tffm", level="INFO"):
            config = resolve_layout(TrainConfig(data=[path], format="libsvm"))
        self.assertIsNone(config.fields)

    def test_named_fields_are_kept(self):
        path = self.write(["1 3:1 10:1", "-1 4:1 11:1"])
        config = resolve_layout(
            TrainConfig(data=[path], format="libsvm", fields=["a", "b"]),
        )
        self.assertEqual(config.fields, ["a", "b"])
        self.assertTrue(config.binary_labels)


class ListColumnTest(testing.TestCase):
    def test_a_list_column_keeps_its_options_or_takes_the_specs(self):
        config = TrainConfig(
            data=["unused.csv"],
            format="csv",
            label="y",
            columns={
                "plain": {"kind": "list", "hash_bins": 7},
                "set": {
                    "kind": "list",
                    "hash_bins": 7,
                    "max_len": 3,
                    "combiner": "mean",
                },
            },
        )
        plain, given = build_features(config.layout, scan=None)
        self.assertEqual((plain.max_len, plain.combiner), (16, "sum"))
        self.assertEqual((given.max_len, given.combiner), (3, "mean"))
