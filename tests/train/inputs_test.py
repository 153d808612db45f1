"""`tffm train --scan DIR`: vocabularies and statistics from a scan folder."""

import contextlib
import filecmp
import io
import json
import os

import keras
import pytest

from tests.train.distribute import helpers
from tffm import testing
from tffm.data import beam_scan
from tffm.train.config import TrainConfig

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the scan reads with tf.data; one backend is enough",
)


class ScanFolderTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _tmp(self, tmp_path):
        self.tmp = tmp_path

    def _config(self, **overrides):
        data = str(self.tmp / "train.csv")
        if not os.path.exists(data):
            helpers.write_planted_csv(data, 1200, seed=3)
        values = dict(helpers.CONFIG, data=[data], epochs=1, **overrides)
        values["columns"] = dict(
            values["columns"], c1={"kind": "categorical", "min_frequency": 2}
        )
        return TrainConfig.from_dict(values)

    def test_training_from_a_scan_folder_matches_scanning(self):
        from tffm.cli import main
        from tffm.train.pipeline import train

        config = self._config()
        scan = str(self.tmp / "scan")
        beam_scan.scan_locally(
            config.layout, config.data, scan
        )  # what --local writes
        scanned = train(config, str(self.tmp / "scanned"), verbose=0)
        path = self.tmp / "config.json"
        path.write_text(json.dumps(config.to_dict()))
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(
                ["train", "--config", str(path), "--scan", scan]
                + ["--output", str(self.tmp / "read")]
            )
        self.assertEqual(code, 0)
        read = str(self.tmp / "read")
        vocab = sorted(os.listdir(os.path.join(scan, "vocab")))
        self.assertEqual(vocab, ["c0.txt", "c1.txt", "tags.txt"])
        # Both trainings wrote the scan folder's files, as the scan did.
        for folder in (str(self.tmp / "scanned"), read):
            compared = ["statistics.json", "scan.json"]
            compared += [f"vocab/{n}" for n in vocab]
            _, mismatch, errors = filecmp.cmpfiles(
                scan, folder, compared, shallow=False
            )
            self.assertEqual((mismatch, errors), ([], []), folder)
        got = helpers.model_weights(os.path.join(read, "model.keras"))
        want = [keras.ops.convert_to_numpy(w) for w in scanned.model.weights]
        self.assertEqual(len(got), len(want))
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            self.assertAllClose(a, b, tol=testing.FP32, msg=f"weight {i}")

    def test_read_scan_gives_back_what_was_scanned(self):
        config = self._config()
        scan = str(self.tmp / "scan")
        scanned = beam_scan.scan_locally(config.layout, config.data, scan)
        read = beam_scan.read_scan(scan, config.layout, config.data)
        self.assertEqual(read.rows, scanned.rows)
        self.assertEqual(read.numeric, scanned.numeric)
        for name in ("c0", "c1", "tags"):
            self.assertEqual(
                read.vocabulary(name),
                scanned.vocabulary(
                    name, min_frequency=2 if name == "c1" else 1
                ),
            )

    def test_mismatched_scan_fails_naming_the_file_and_differences(self):
        scan = str(self.tmp / "scan")
        beam_scan.scan_locally(self._config().layout, self._config().data, scan)
        other = self._config(min_frequency=3, holdout_every=5)
        other.columns["n1"] = {"kind": "numeric", "transform": "log1p"}
        del other.columns["tags"]
        with self.assertRaises(ValueError) as raised:
            beam_scan.read_scan(scan, other.layout, other.data)
        message = str(raised.exception)
        self.assertIn(os.path.join(scan, "scan.json"), message)
        self.assertIn("holdout_every: 10 in the scan, 5 here", message)
        self.assertIn(
            "column 'c0': min_frequency 1 in the scan, 3 here", message
        )
        # c1 sets its own min_frequency: unchanged, not reported.
        self.assertNotIn("column 'c1'", message)
        self.assertIn(
            "column 'n1': transform 'identity' in the scan, 'log1p' here",
            message,
        )
        self.assertIn(
            "column 'tags' was scanned, this config has none", message
        )

    def test_training_with_a_mismatched_scan_fails_before_fitting(self):
        from tffm.train.pipeline import train

        scan = str(self.tmp / "scan")
        beam_scan.scan_locally(self._config().layout, self._config().data, scan)
        config = self._config(max_tokens=5, scan=scan)
        with self.assertRaisesRegex(
            ValueError, "max_tokens None in the scan, 5 here"
        ):
            train(config, str(self.tmp / "out"), verbose=0)
        self.assertFalse(os.path.exists(self.tmp / "out" / "model.keras"))

    def test_not_a_scan_folder(self):
        with self.assertRaisesRegex(FileNotFoundError, "not a scan folder"):
            beam_scan.read_scan(
                str(self.tmp), self._config().layout, self._config().data
            )
