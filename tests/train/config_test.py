"""`TrainConfig`'s checks of options against the data format."""

from absl.testing import parameterized

from tffm import testing
from tffm.train.config import TrainConfig

COLUMNS = {"c": {"kind": "categorical"}}
HASHED_C1 = {"C1": {"kind": "categorical", "hash_bins": 8}}


class FormatOptionsTest(testing.TestCase):
    @parameterized.named_parameters(
        ("criteo_columns", "criteo", "columns", HASHED_C1),
        ("criteo_delimiter", "criteo", "delimiter", ";"),
        ("criteo_column_names", "criteo", "column_names", ["a"]),
        ("criteo_list_separator", "criteo", "list_separator", ";"),
        ("criteo_fields", "criteo", "fields", ["a"]),
        ("criteo_label", "criteo", "label", "click"),
        ("libsvm_columns", "libsvm", "columns", COLUMNS),
        ("libsvm_delimiter", "libsvm", "delimiter", ";"),
        ("csv_fields", "csv", "fields", ["a"]),
        ("csv_binary_labels", "csv", "binary_labels", True),
        ("parquet_delimiter", "parquet", "delimiter", ";"),
        ("parquet_column_names", "parquet", "column_names", ["c"]),
    )
    def test_options_the_reader_ignores_are_refused(self, fmt, key, value):
        options = {"format": fmt, key: value}
        if fmt in ("csv", "parquet"):
            options.setdefault("columns", COLUMNS)
        message = (
            f"run.json: `{key}` does not apply to format '{fmt}', whose "
            "reader would ignore it"
        )
        with self.assertRaisesRegex(ValueError, message):
            TrainConfig.from_dict(options, source="run.json")
        with self.assertRaisesRegex(ValueError, f"`{key}` does not apply"):
            TrainConfig(**options)

    def test_criteo_columns_say_what_to_use_instead(self):
        with self.assertRaisesRegex(
            ValueError, "`min_frequency` and `max_tokens`"
        ):
            TrainConfig(format="criteo", columns=HASHED_C1)

    def test_options_that_apply_or_keep_their_default_pass(self):
        TrainConfig(format="criteo", delimiter=",", label="label", columns={})
        TrainConfig(format="libsvm", fields=["a"], binary_labels=True)
        TrainConfig(
            format="csv",
            columns=COLUMNS,
            delimiter=";",
            list_separator=",",
            column_names=["label", "c"],
        )
        TrainConfig(format="parquet", columns=COLUMNS, label="y")
        # Encoded data is read as its encoding says, whatever it was.
        TrainConfig(format="encoded", columns=COLUMNS, delimiter=";")
        # A written config (every key) reads back.
        written = TrainConfig(format="criteo").to_dict()
        self.assertEqual(TrainConfig.from_dict(written).format, "criteo")

    def test_delimiter_is_one_character(self):
        for bad in ("", ";;", "\\t", '"', "\n"):
            with self.assertRaisesRegex(
                ValueError, "run.json: `delimiter` must be one character"
            ):
                TrainConfig.from_dict(
                    {"columns": COLUMNS, "delimiter": bad}, source="run.json"
                )
        self.assertEqual(
            TrainConfig(columns=COLUMNS, delimiter="\t").delimiter, "\t"
        )
        with self.assertRaisesRegex(ValueError, "`list_separator` must not"):
            TrainConfig(columns=COLUMNS, list_separator="")
