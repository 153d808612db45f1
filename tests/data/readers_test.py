import gzip
import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tffm import data
from tffm import testing


def criteo_line(label, ints, cats):
    return "\t".join([str(label)] + [str(i) for i in ints] + list(cats))


def collect(source):
    features, labels = {}, []
    for f, y in source.dataset:
        labels.append(y.numpy())
        for k, v in f.items():
            features.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in features.items()}, np.concatenate(
        labels
    )


class CriteoTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def write(self, name, lines, gz=False):
        path = self.tmp / name
        text = "\n".join(lines) + "\n"
        if gz:
            with gzip.open(path, "wt") as f:
                f.write(text)
        else:
            path.write_text(text)
        return str(path)

    def rows(self):
        ints = [
            [1, 2, "", 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            ["", 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99],
        ]
        cats = [[f"c{j}" for j in range(26)], [""] * 25 + ["last"]]
        return [
            criteo_line(1, ints[0], cats[0]),
            criteo_line(0, ints[1], cats[1]),
        ]

    def test_values_and_missing(self):
        path = self.write("day.tsv", self.rows())
        features, labels = collect(
            data.read_criteo(path, data.ReadOptions(batch_size=8))
        )
        self.assertAllEqual(labels, [1.0, 0.0])
        self.assertAllEqual(features["I2"], [2.0, 0.0])
        self.assertTrue(math.isnan(features["I3"][0]))
        self.assertTrue(math.isnan(features["I1"][1]))
        self.assertAllEqual(features["I13"], [13.0, 99.0])
        self.assertAllEqual(features["C1"], [b"c0", b""])
        self.assertAllEqual(features["C26"], [b"c25", b"last"])
        self.assertLen(features, 39)

    def test_gzip_and_glob(self):
        self.write("part-0.tsv.gz", self.rows(), gz=True)
        self.write("part-1.tsv", self.rows()[:1])
        source = data.read_criteo(
            str(self.tmp / "part-*"), data.ReadOptions(batch_size=2)
        )
        self.assertLen(source.files, 2)
        _, labels = collect(source)
        self.assertEqual(sorted(labels.tolist()), [0.0, 1.0, 1.0])

    def test_wrong_column_count_names_file_and_line(self):
        rows = self.rows() + ["1\t2\t3"]
        path = self.write("bad.tsv", rows)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"bad\.tsv:3: expected 40 columns, got 3",
        ):
            collect(data.read_criteo(path))

    def test_bad_number_names_file_line_and_column(self):
        bad = self.rows()[0].split("\t")
        bad[5] = "12x"  # I5
        path = self.write("bad.tsv", [self.rows()[1], "\t".join(bad)])
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"bad\.tsv:2: column I5: bad number 12x",
        ):
            collect(data.read_criteo(path))

    def test_non_utf8_bytes(self):
        path = self.tmp / "latin.tsv"
        good = self.rows()[0].encode()
        path.write_bytes(good + b"\n" + good.replace(b"c3", b"caf\xe9") + b"\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"latin\.tsv:2: not valid UTF-8"
        ):
            collect(data.read_criteo(str(path)))

    def test_empty_file_and_missing_file(self):
        empty = self.tmp / "empty.tsv"
        empty.write_text("")
        with self.assertRaisesRegex(ValueError, "empty.tsv: the file is empty"):
            data.read_criteo(str(empty))
        with self.assertRaisesRegex(FileNotFoundError, "nothing-"):
            data.read_criteo(str(self.tmp / "nothing-*.tsv"))

    def test_lenient_skips_and_counts(self):
        bad = self.rows()[0].replace("\t4\t", "\tfour\t", 1)
        rows = [self.rows()[0], "short\tline", bad, self.rows()[1]]
        path = self.write("mixed.tsv", rows)
        source = data.read_criteo(
            path, data.ReadOptions(batch_size=3, lenient=True)
        )
        _, labels = collect(source)
        self.assertAllEqual(labels, [1.0, 0.0])
        self.assertEqual(int(source.skipped.numpy()), 2)

    def test_shuffle_keeps_every_row(self):
        rows = [
            criteo_line(i % 2, [i] + [0] * 12, ["x"] * 26) for i in range(50)
        ]
        path = self.write("many.tsv", rows)
        source = data.read_criteo(
            path, data.ReadOptions(batch_size=7, shuffle_buffer=50, seed=1)
        )
        features, _ = collect(source)
        self.assertEqual(sorted(features["I1"].tolist()), list(range(50)))
        self.assertNotEqual(features["I1"].tolist(), list(range(50)))


class CsvTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    KINDS = {
        "city": "categorical",
        "age": "numeric",
        "uid": "integer",
        "tags": "list",
    }

    def test_header_kinds_and_lists(self):
        path = self.tmp / "x.csv"
        path.write_text(
            "id,city,age,uid,tags,click\n"
            '1,"paris",31.5,7,a|b,1\n'
            "2,,,,,0\n"
            "3,tokyo,-2,12,a|b|c|d,1\n"
        )
        features, labels = collect(
            data.read_csv(
                str(path), kinds=self.KINDS, label="click", max_len={"tags": 3}
            )
        )
        self.assertAllEqual(labels, [1, 0, 1])
        self.assertAllEqual(features["city"], [b"paris", b"", b"tokyo"])
        self.assertAllClose(features["age"][[0, 2]], [31.5, -2.0])
        self.assertTrue(np.isnan(features["age"][1]))
        self.assertAllEqual(features["uid"], [7, -1, 12])
        self.assertAllEqual(
            features["tags"],
            [[b"a", b"b", b""], [b"", b"", b""], [b"a", b"b", b"c"]],
        )

    def test_quoted_fields_hold_the_delimiter(self):
        path = self.tmp / "q.csv"
        path.write_text(
            'title,age,click\n"Shawshank Redemption, The",3,1\n'
            '"say ""hi""",4,0\n'
        )
        features, _ = collect(
            data.read_csv(
                str(path),
                kinds={"title": "categorical", "age": "numeric"},
                label="click",
            )
        )
        self.assertAllEqual(
            features["title"], [b"Shawshank Redemption, The", b'say "hi"']
        )
        self.assertAllEqual(features["age"], [3.0, 4.0])
        path.write_text('title,age,click\n"open,3,1\n')
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"q\.csv:2: unbalanced double quote"
        ):
            collect(
                data.read_csv(
                    str(path), kinds={"age": "numeric"}, label="click"
                )
            )

    def test_missing_column_names_feature(self):
        path = self.tmp / "x.csv"
        path.write_text("city,click\nparis,1\n")
        with self.assertRaisesRegex(
            ValueError, r"x\.csv:1: the header has no column 'age'"
        ):
            data.read_csv(str(path), kinds={"age": "numeric"}, label="click")

    def test_bad_row_names_line(self):
        path = self.tmp / "x.csv"
        path.write_text("city,age,click\nparis,3,1\nlima,old,0\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"x\.csv:3: column age: bad number old",
        ):
            collect(
                data.read_csv(
                    str(path), kinds={"age": "numeric"}, label="click"
                )
            )

    def test_parquet_matches_csv(self):
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "city": ["paris", None, "tokyo"],
                "age": [31.5, None, -2.0],
                "uid": [7, None, 12],
                "tags": [["a", "b"], [], ["a", "b", "c", "d"]],
                "click": [1, 0, 1],
            }
        )
        path = str(self.tmp / "x.parquet")
        pq.write_table(table, path, row_group_size=2)
        features, labels = collect(
            data.read_parquet(
                path,
                data.ReadOptions(batch_size=2),
                kinds=self.KINDS,
                label="click",
                max_len={"tags": 3},
            )
        )
        self.assertAllEqual(labels, [1, 0, 1])
        self.assertAllEqual(features["city"], [b"paris", b"", b"tokyo"])
        self.assertAllEqual(features["uid"], [7, -1, 12])
        self.assertTrue(np.isnan(features["age"][1]))
        self.assertAllEqual(features["tags"][2], [b"a", b"b", b"c"])
        with self.assertRaisesRegex(ValueError, "no column 'zip'"):
            data.read_parquet(path, kinds={"zip": "categorical"}, label=None)


class LibsvmTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_sparse_rows(self):
        path = self.tmp / "x.libsvm"
        path.write_text("1 3:0.5 7:2\n-1 1:1\n0 2:1 3:1 4:-1.5e-1\n")
        features, labels = collect(
            data.read_libsvm(str(path), binary_labels=True, max_nonzeros=3)
        )
        self.assertAllEqual(labels, [1, 0, 0])
        self.assertAllEqual(
            features["indices"], [[3, 7, -1], [1, -1, -1], [2, 3, 4]]
        )
        self.assertAllClose(
            features["values"], [[0.5, 2, 0], [1, 0, 0], [1, 1, -0.15]]
        )

    def test_ffm_fields(self):
        path = self.tmp / "x.ffm"
        path.write_text("1 0:5:1 1:9:0.5\n0 1:2:1\n")
        features, _ = collect(data.read_libsvm(str(path), ffm=True))
        self.assertAllEqual(features["fields"], [[0, 1], [1, -1]])
        self.assertAllEqual(features["indices"], [[5, 9], [2, -1]])

    def test_field_per_position(self):
        path = self.tmp / "x.libfm"
        path.write_text("1 4:1 10:1\n-1 5:1 11:1\n")
        features, labels = collect(
            data.read_libsvm(
                str(path), fields=["user", "item"], binary_labels=True
            )
        )
        self.assertAllEqual(features["user"], [4, 5])
        self.assertAllEqual(features["item"], [10, 11])
        path.write_text("1 4:1 10:1\n-1 5:1\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"x\.libfm:2: expected 2 idx:val"
        ):
            collect(data.read_libsvm(str(path), fields=["user", "item"]))

    def test_malformed_entries(self):
        path = self.tmp / "x.libsvm"
        path.write_text("1 3:0.5\n1 3-0.5\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"x\.libsvm:2: entries must be idx:val",
        ):
            collect(data.read_libsvm(str(path)))
        path.write_text("1 3:0.5\n1 12:1\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"x\.libsvm:2: index >= num_features=10",
        ):
            collect(data.read_libsvm(str(path), num_features=10))


def parsed(result):
    """`parse_*`'s tensors as numpy (strings as `str`)."""
    features, labels, problems = result
    out = {k: v.numpy() for k, v in features.items()}
    return out, labels.numpy(), [p.decode() for p in problems.numpy()]


class ParseDelimitedTest(testing.TestCase):
    """`parse_delimited` on one batch of lines, no files involved."""

    COLUMNS = ["label", "city", "n", "year", "tags"]
    KINDS = {
        "city": "categorical",
        "n": "numeric",
        "year": "integer",
        "tags": "list",
    }

    def parse(self, lines, **kwargs):
        kwargs.setdefault("columns", self.COLUMNS)
        kwargs.setdefault("kinds", self.KINDS)
        kwargs.setdefault("label", "label")
        kwargs.setdefault("delimiter", ",")
        return parsed(
            data.parse_delimited(
                tf.constant(lines), max_len={"tags": 3}, **kwargs
            )
        )

    def test_values_missing_and_lists(self):
        features, labels, problems = self.parse(
            [
                "1,paris,2.5,1999,a|b",
                '0,"lima, ""pe""",,,',  # quoted delimiter; empty cells
                "1,oslo,-1e3,7,a|b|c|d\r",
            ]
        )
        self.assertEqual(problems, ["", "", ""])
        self.assertAllEqual(labels, [1.0, 0.0, 1.0])
        self.assertEqual(
            features["city"].tolist(), [b"paris", b'lima, "pe"', b"oslo"]
        )
        self.assertAllClose(features["n"][[0, 2]], [2.5, -1000.0])
        self.assertTrue(math.isnan(features["n"][1]))  # empty: missing
        self.assertEqual(features["year"].dtype, np.int64)
        self.assertAllEqual(features["year"], [1999, -1, 7])  # -1: missing
        # Cut / padded with "" to max_len 3.
        self.assertEqual(
            features["tags"].tolist(),
            [[b"a", b"b", b""], [b"", b"", b""], [b"a", b"b", b"c"]],
        )

    def test_tab_separated_without_quotes_or_label(self):
        features, labels, problems = self.parse(
            ['"x"\t3', "y\t"],
            columns=["city", "n"],
            kinds={"city": "categorical", "n": "numeric"},
            label=None,
            delimiter="\t",
            quoted=False,
            keep=["city"],
        )
        self.assertEqual(problems, ["", ""])
        self.assertAllEqual(labels, [0.0, 0.0])  # no label column: 0
        self.assertEqual(features["city"].tolist(), [b'"x"', b"y"])
        self.assertEqual(features["#city"].tolist(), [b'"x"', b"y"])
        self.assertAllClose(features["n"][:1], [3.0])

    def test_delimiter_must_be_one_character(self):
        with self.assertRaisesRegex(ValueError, "delimiter=';;'"):
            self.parse(["1;;a"], delimiter=";;")

    def test_list_separator(self):
        features, _, _ = self.parse(
            ["1,a,1,1,x;y"], list_separator=";", kinds={"tags": "list"}
        )
        self.assertEqual(features["tags"].tolist(), [[b"x", b"y", b""]])

    def test_problems_name_the_column_and_leave_placeholders(self):
        features, labels, problems = self.parse(
            [
                "1,a,2,3",  # 4 columns
                '1,"a,2,3,x',  # unbalanced quote
                '1, "a",2,3,x',  # a quote inside an unquoted field
                "1,a\rb,2,3,x",
                "1,a,2x,3,x",
                "1,a,1e39,3,x",  # beyond float32
                "2,a,1,3,x",  # with binary: label 2
                ",a,1,3,x",  # empty label
                "1,a,1,3,x",
            ],
            binary=True,
        )
        self.assertEqual(
            problems,
            [
                "expected 5 columns, got 4",
                "unbalanced double quote, or one inside an unquoted field",
                "unbalanced double quote, or one inside an unquoted field",
                "carriage return inside a field",
                "column n: bad number 2x",
                "column n: infinite or beyond float32 (+-3.4e38): 1e39",
                "column label must be 0 or 1 for a binary task, got 2",
                "column label: bad number ",
                "",
            ],
        )
        # Bad rows get label 0 and missing values, never a parse failure.
        self.assertAllEqual(labels, [0] * 8 + [1])
        self.assertTrue(np.isnan(features["n"][:8]).all())
        self.assertAllEqual(features["n"][8:], [1.0])


class ParseLibsvmTest(testing.TestCase):
    """`parse_libsvm` on one batch of lines, no files involved."""

    def parse(self, lines, **kwargs):
        return parsed(data.parse_libsvm(tf.constant(lines), **kwargs))

    def test_sparse_entries_padded_with_minus_one(self):
        features, labels, problems = self.parse(
            ["1 3:0.5 7:2", "0  1:1 ", "1 2:1 3:1 4:-1.5e-1"]
        )
        self.assertEqual(problems, ["", "", ""])
        self.assertAllEqual(labels, [1.0, 0.0, 1.0])
        self.assertEqual(features["indices"].dtype, np.int32)
        self.assertAllEqual(
            features["indices"], [[3, 7, -1], [1, -1, -1], [2, 3, 4]]
        )
        self.assertAllClose(
            features["values"], [[0.5, 2, 0], [1, 0, 0], [1, 1, -0.15]]
        )

    def test_max_nonzeros_cuts_and_pads(self):
        features, _, _ = self.parse(
            ["1 3:0.5 7:2 9:1", "0 1:1"], max_nonzeros=2
        )
        self.assertAllEqual(features["indices"], [[3, 7], [1, -1]])
        self.assertAllClose(features["values"], [[0.5, 2], [1, 0]])

    def test_ffm_and_named_fields(self):
        features, _, _ = self.parse(["1 0:5:1 1:9:0.5", "0 1:2:1"], ffm=True)
        self.assertAllEqual(features["fields"], [[0, 1], [1, -1]])
        self.assertAllEqual(features["indices"], [[5, 9], [2, -1]])
        features, labels, problems = self.parse(
            ["1 4:1 10:1", "-1 5:1 11:1", "+1 6:1"],
            fields=["user", "item"],
            binary_labels=True,
        )
        self.assertAllEqual(features["user"], [4, 5, 6])
        self.assertAllEqual(features["item"][:2], [10, 11])
        self.assertAllEqual(labels[:2], [1.0, 0.0])  # > 0 is 1
        self.assertEqual(
            problems,
            ["", "", "expected 2 idx:val entries (fields ['user', 'item'])"],
        )

    def test_problems(self):
        _, labels, problems = self.parse(
            ["1 3-0.5", "1 a:1", "x 3:1", "1 12:1", "-1 3:1", "1 3:1"],
            num_features=10,
            binary=True,
        )
        self.assertEqual(
            problems,
            [
                "entries must be idx:val or field:idx:val",
                "bad index or value in an idx:val entry",
                "column label: bad number x",
                "index >= num_features=10",
                "label must be 0 or 1 for a binary task, got -1 "
                "(for -1/+1 labels: --binary-labels)",
                "",
            ],
        )
        self.assertAllEqual(labels, [0, 0, 0, 0, 0, 1])


class HoldoutTest(testing.TestCase):
    def test_holdout_split_is_a_partition(self):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/x.libsvm"
            with open(path, "w") as f:
                f.write("".join(f"{i % 2} {i}:1\n" for i in range(1, 31)))
            parts = []
            for holdout in (False, True):
                features, _ = collect(
                    data.read_libsvm(
                        path,
                        data.ReadOptions(
                            holdout_every=5,
                            holdout=holdout,
                            shuffle_buffer=30,
                            seed=holdout,
                        ),
                    )
                )
                parts.append(sorted(features["indices"][:, 0].tolist()))
        self.assertEqual(parts[1], [5, 10, 15, 20, 25, 30])
        self.assertEqual(sorted(parts[0] + parts[1]), list(range(1, 31)))

    @parameterized.parameters(False, True)
    def test_batches_the_holdout_empties_are_dropped(self, lenient):
        # Batches of 4 lines, every 10th line held out: most batches keep
        # no row, and the row check on an empty batch once failed
        # ("Reduction axis 0 is empty") whenever the batch size was below
        # `holdout_every` or a shuffled batch missed the holdout.
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/x.csv"
            with open(path, "w") as f:
                f.write("x,label\n")
                f.write("".join(f"{i},{i % 2}\n" for i in range(1, 26)))

            def read(holdout):
                return collect(
                    data.read_csv(
                        path,
                        data.ReadOptions(
                            batch_size=4,
                            holdout_every=10,
                            holdout=holdout,
                            lenient=lenient,
                        ),
                        kinds={"x": "numeric"},
                        label="label",
                    )
                )

            held_out, labels = read(holdout=True)
            kept, _ = read(holdout=False)
        # Line numbers count the header: lines 10 and 20 hold x=9, 19.
        self.assertEqual(sorted(held_out["x"].tolist()), [9, 19])
        self.assertAllEqual(labels, [1, 1])
        self.assertEqual(len(kept["x"]), 25 - 2)
        self.assertNotIn(9, kept["x"].tolist())


class HostileFileTest(testing.TestCase):
    """Files that are cut, mislabelled, or hold values a model cannot use."""

    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def lines(self, n=200):
        return [
            criteo_line(i % 2, [i] + [0] * 12, [f"c{i % 7}"] * 26)
            for i in range(n)
        ]

    def gzip_bytes(self, lines):
        return gzip.compress(("\n".join(lines) + "\n").encode())

    def test_gzip_cut_at_a_line_boundary_names_the_file(self):
        whole = self.gzip_bytes(self.lines())
        path = self.tmp / "cut.tsv.gz"
        # Cut the compressed stream: what remains decodes to whole lines
        # only by luck of where the cut falls, so cut at several places.
        for cut in (len(whole) // 2, len(whole) - 8, len(whole) - 1):
            path.write_bytes(whole[:cut])
            with self.assertRaisesRegex(ValueError, r"cut\.tsv\.gz.*truncated"):
                data.read_criteo(str(path))
            # --lenient skips malformed rows, never a truncated file.
            with self.assertRaisesRegex(ValueError, "truncated"):
                data.read_criteo(str(path), data.ReadOptions(lenient=True))

    def test_gzip_corrupt_and_not_gzip(self):
        whole = bytearray(self.gzip_bytes(self.lines()))
        whole[len(whole) // 2] ^= 0xFF
        corrupt = self.tmp / "corrupt.tsv.gz"
        corrupt.write_bytes(bytes(whole))
        with self.assertRaisesRegex(ValueError, r"corrupt\.tsv\.gz: corrupt"):
            data.read_criteo(str(corrupt))
        fake = self.tmp / "plain.tsv.gz"
        fake.write_text("\n".join(self.lines(3)) + "\n")
        with self.assertRaisesRegex(ValueError, r"plain\.tsv\.gz: not a gzip"):
            data.read_criteo(str(fake))

    def test_gzip_without_suffix_and_multi_member_are_read(self):
        lines = self.lines(10)
        two = self.gzip_bytes(lines[:4]) + self.gzip_bytes(lines[4:])
        path = self.tmp / "day_0"  # gzip, named without .gz
        path.write_bytes(two)
        _, labels = collect(data.read_criteo(str(path)))
        self.assertLen(labels, 10)

    @parameterized.named_parameters(
        ("inf", "inf"), ("minus_inf", "-Infinity"), ("overflow", "1e308")
    )
    def test_infinite_numbers_name_file_line_and_column(self, value):
        rows = self.lines(3)
        cells = rows[1].split("\t")
        cells[3] = value  # I3
        rows[1] = "\t".join(cells)
        path = self.tmp / "big.tsv"
        path.write_text("\n".join(rows) + "\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            rf"big\.tsv:2: column I3: infinite or beyond float32.*{value}",
        ):
            collect(data.read_criteo(str(path)))
        # NaN stays "missing", and the largest float32 values are numbers.
        cells[3] = "nan"
        rows[1] = "\t".join(cells)
        cells = rows[2].split("\t")
        cells[3] = "-3.4e38"
        rows[2] = "\t".join(cells)
        path.write_text("\n".join(rows) + "\n")
        features, _ = collect(data.read_criteo(str(path)))
        self.assertTrue(math.isnan(features["I3"][1]))
        self.assertAllClose(features["I3"][2], -3.4e38, tol=(0, 1e-6))

    def test_binary_labels_must_be_zero_or_one(self):
        rows = self.lines(3)
        rows[2] = "2" + rows[2][1:]
        path = self.tmp / "labels.tsv"
        path.write_text("\n".join(rows) + "\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            r"labels\.tsv:3: column label must be 0 or 1 for a binary task, "
            r"got 2",
        ):
            collect(data.read_criteo(str(path)))
        libsvm = self.tmp / "pm.libsvm"
        libsvm.write_text("1 0:1 1:1\n-1 0:1 2:1\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"pm\.libsvm:2:.*--binary-labels"
        ):
            collect(data.read_libsvm(str(libsvm), binary=True))
        _, labels = collect(
            data.read_libsvm(str(libsvm), binary=True, binary_labels=True)
        )
        self.assertAllEqual(labels, [1.0, 0.0])

    def test_criteo_without_label_column(self):
        rows = [line.split("\t", 1)[1] for line in self.lines(5)]
        path = self.tmp / "test.txt"
        path.write_text("\n".join(rows) + "\n")
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, r"expected 40 columns, got 39"
        ):
            collect(data.read_criteo(str(path)))
        features, labels = collect(data.read_criteo(str(path), has_label=None))
        self.assertAllEqual(features["I1"], [0, 1, 2, 3, 4])
        self.assertAllEqual(labels, np.zeros(5))

    def test_lenient_logs_why_and_positions_come_in_order(self):
        rows = self.lines(6)
        rows[1] = "short\tline"
        rows[4] = rows[4].replace("\t0\t", "\tzero\t", 1)
        a = self.tmp / "a.tsv"
        b = self.tmp / "b.tsv"
        a.write_text("\n".join(rows) + "\n")
        b.write_text("\n".join(self.lines(3)) + "\n")
        source = data.read_criteo(
            [str(a), str(b)],
            data.ReadOptions(
                batch_size=4, lenient=True, in_order=True, with_position=True
            ),
        )
        features, _ = collect(source)
        self.assertAllEqual(features["#line"], [1, 3, 4, 6, 1, 2, 3])
        self.assertEqual(
            [p.decode().rsplit("/", 1)[1] for p in features["#file"]],
            ["a.tsv"] * 4 + ["b.tsv"] * 3,
        )
        summary = source.log.summary()
        self.assertEqual(summary["skipped"], 2)
        self.assertRegex(summary["examples"][0], r"a\.tsv:2: expected 40")
        self.assertRegex(summary["examples"][1], r"a\.tsv:5: column I\d+")

    def test_lenient_logs_every_example_when_batches_race(self):
        # Five bad rows in five batches checked in parallel: each must get
        # its own example slot (a shared, unlocked counter let two batches
        # write the same one).
        rows = self.lines(40)
        for i in (1, 9, 17, 25, 33):
            rows[i] = "short\tline"
        path = self.tmp / "race.tsv"
        path.write_text("\n".join(rows) + "\n")
        for _ in range(5):
            source = data.read_criteo(
                str(path), data.ReadOptions(batch_size=8, lenient=True)
            )
            collect(source)
            summary = source.log.summary()
            self.assertEqual(summary["skipped"], 5)
            self.assertEqual(
                [
                    e.rsplit("/", 1)[1].split(":")[1]
                    for e in summary["examples"]
                ],
                ["2", "10", "18", "26", "34"],
            )


class ParquetHostileTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def test_infinite_values_and_bad_labels_name_file_and_row(self):
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        path = str(self.tmp / "x.parquet")
        table = pa.table(
            {
                "price": [1.0, float("inf"), 3.0, 1e300],
                "click": [0.0, 1.0, 2.0, 1.0],
            }
        )
        pq.write_table(table, path)
        read = dict(kinds={"price": "numeric"}, label="click", binary=True)
        with self.assertRaisesRegex(
            data.DataError,
            r"x\.parquet:row 2: column price: infinite or beyond float32",
        ):
            with data.raise_row_errors():
                collect(data.read_parquet(path, **read))
        source = data.read_parquet(
            path, data.ReadOptions(lenient=True, with_position=True), **read
        )
        features, labels = collect(source)
        self.assertAllEqual(features["#line"], [1])
        self.assertAllEqual(labels, [0.0])
        summary = source.log.summary()
        self.assertEqual(summary["skipped"], 3)
        self.assertIn(
            "x.parquet:row 3: column click must be 0 or 1",
            summary["examples"][1],
        )
