import farmhash
import keras
import numpy as np
import pytest
from absl.testing import parameterized

from serving import fingerprint
from tffm import testing

ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789 _-") + [
    "é", "ß", "日", "語", "🚀", "\x00", "\x7f",
]  # fmt: skip


def reference(strings):
    return np.array(
        [farmhash.fingerprint64(s) for s in strings], np.uint64
    ).view(np.int64)


def random_strings(rng, lengths, ascii_only):
    alphabet = ALPHABET[:39] if ascii_only else ALPHABET
    return ["".join(rng.choice(alphabet, n)) if n else "" for n in lengths]


class FingerprintTest(testing.TestCase):
    @parameterized.named_parameters(
        ("empty", [0]),
        ("len1to3", range(1, 4)),
        ("len4to7", range(4, 8)),
        ("len8to16", range(8, 17)),
        ("len17to32", range(17, 33)),
        ("len33to64", range(33, 65)),
        ("len65to300", range(65, 301)),
        ("long", [1000, 4096, 10_000]),
    )
    def test_equals_pyfarmhash_on_every_length_class(self, lengths):
        for ascii_only in (True, False):
            strings = random_strings(self.rng, list(lengths) * 40, ascii_only)
            got = fingerprint.fingerprint64_flat(strings)
            self.assertAllEqual(got, reference(strings))

    def test_mixed_batch_and_shapes(self):
        lengths = self.rng.integers(0, 200, 5000)
        strings = random_strings(self.rng, lengths, ascii_only=False)
        strings += ["a\x00", "\x00", "\x00\x00b", "ab\x00\x00"]  # NUL inside
        self.assertAllEqual(
            fingerprint.fingerprint64_flat(strings), reference(strings)
        )
        grid = np.array(strings[:4000], dtype=object).reshape(50, 80)
        got = fingerprint.fingerprint64(grid)
        self.assertEqual(got.shape, (50, 80))
        self.assertAllEqual(got.reshape(-1), reference(strings[:4000]))
        few = fingerprint.fingerprint64(["x", ""])  # below the threshold
        self.assertAllEqual(few, reference(["x", ""]))

    def test_invalid_unicode_raises(self):
        with self.assertRaises(UnicodeEncodeError):
            fingerprint.fingerprint64_flat(["ok"] * 200 + ["\udc80"])


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="export and serving tests run under TensorFlow",
)
class FeedTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, onnx_file, trained):
        self.onnx = onnx_file
        self.model = trained

    def test_fast_columnar_and_checked_paths_agree_with_keras(self):
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor
        from tffm.features import check_raw

        from .conftest import FEATURES
        from .conftest import keras_outputs

        predictor = OnnxPredictor(self.onnx)
        for size in (1, 7, 300):
            raw = edge_case_batch(FEATURES, size, seed=size)
            expected = keras_outputs(self.model, raw)
            lists = {k: v.tolist() for k, v in raw.items()}
            as_bytes = dict(
                raw, city=np.array([s.encode() for s in raw["city"]], object)
            )
            for values in (raw, lists, as_bytes):
                out = predictor.predict(values)
                self.assertAllClose(
                    out["probability"], expected["probability"], tol=testing.ORT
                )
            # The grouped fast path builds exactly the checked path's feeds,
            # from lists, arrays, and the two mixed within a group.
            checked = predictor.feed.columns(check_raw(FEATURES, raw))
            mixed = dict(lists, price=raw["price"], ad_id=raw["ad_id"])
            for values in (lists, raw, mixed):
                feeds = predictor.feed(values)
                self.assertEqual(set(feeds), set(checked))
                for name, value in checked.items():
                    self.assertEqual(feeds[name].dtype, value.dtype, name)
                    self.assertAllEqual(feeds[name], value)
            columns = dict(raw, ad_id=raw["ad_id"].astype(str))  # U dtype
            out = predictor.predict_columns(columns)
            self.assertAllClose(
                out["logit"], expected["logit"], tol=testing.ORT
            )

    def test_errors_name_the_feature(self):
        from export.edge_cases import edge_case_batch
        from serving import OnnxPredictor

        from .conftest import FEATURES

        predictor = OnnxPredictor(self.onnx)
        raw = edge_case_batch(FEATURES, 4, seed=0)
        for bad, message in (
            (dict(raw, ad_id=[1, 2, 3, 4]), "'ad_id' takes strings"),
            (dict(raw, price=["a"] * 4), "'price' takes numbers"),
            (dict(raw, score=[1.0] * 3), "'score': batch size 3"),
            (dict(raw, price=[True] * 4), "'price' takes numbers"),
            (dict(raw, score=[0.0, 1e308, 0.0, 0.0]), "'score': row 1 is inf"),
            (dict(raw, price=[[1.0]] * 4), "'price' must have shape"),
            (dict(raw, user=[11, 22, 2**70, 33]), "'user'"),
            ({k: v for k, v in raw.items() if k != "city"}, "Missing features"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                predictor.predict(bad)
        with self.assertRaisesRegex(ValueError, "'user'"):
            predictor.predict_columns(dict(raw, user=raw["user"].astype(float)))
        # Past the per-string hash's threshold the strings are not scanned
        # before hashing: a value of another type still falls back to the
        # full check (bytes are decoded; alone, ints are named).
        big = edge_case_batch(FEATURES, 300, seed=1)
        want = predictor.predict(big)["logit"]
        ad_bytes = [s.encode() for s in big["ad_id"].tolist()]
        got = predictor.predict(dict(big, ad_id=ad_bytes))["logit"]
        self.assertAllEqual(got, want)
        ints = list(range(300))
        with self.assertRaisesRegex(ValueError, "'ad_id' takes strings"):
            predictor.predict(dict(big, ad_id=ints))
