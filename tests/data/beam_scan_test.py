"""The Beam scan (DirectRunner) writes the local scan's files, byte for byte.

apache-beam needs protobuf<7 and pyarrow<26, older than the dev
environment's, so the test installs the `[beam]` extra in a venv of its
own; TensorFlow and Keras (which accept protobuf 6) come from this
environment, appended to that venv's path.
"""

import filecmp
import json
import os
import site
import subprocess
import sys

import keras
import pytest

from tests.train.distribute import helpers
from tffm import testing

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.isdir(helpers.SHARED), reason="no ../shared/data"
    ),
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow",
        reason="the scan reads with tf.data; one backend is enough",
    ),
]

CRITEO = {"format": "criteo", "min_frequency": 2}
AVAZU = {
    "format": "csv",
    "label": "click",
    "columns": {
        "hour": {"kind": "numeric"},
        "banner_pos": {"kind": "integer"},
        "site_id": {"kind": "categorical", "min_frequency": 2},
        "app_id": {"kind": "categorical", "max_tokens": 20},
        "device_ip": {"kind": "categorical", "hash_bins": 1000},
        "device_model": {"kind": "categorical"},
        "C14": {"kind": "numeric", "transform": "log1p"},
        "C20": {"kind": "numeric"},
    },
}


@pytest.fixture(scope="module")
def beam_python(tmp_path_factory):
    venv = tmp_path_factory.mktemp("beam") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", str(venv)], check=True, timeout=120
    )
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{helpers.ROOT}[beam]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    venv_site = subprocess.run(
        [python, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # After the venv's own packages: TensorFlow, Keras from here.
    with open(os.path.join(venv_site, "zz_tffm_dev.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    return python


class BeamScanTest(testing.TestCase):
    @pytest.fixture(autouse=True)
    def _setup(self, tmp_path, beam_python):
        self.tmp = tmp_path
        self.beam_python = beam_python

    def _scan(self, python, config, files, out, *extra):
        path = self.tmp / "config.json"
        path.write_text(json.dumps(config))
        done = subprocess.run(
            [
                python,
                "-m",
                "tffm.cli",
                "scan",
                "--config",
                str(path),
                "--data",
                *files,
                "--output",
                out,
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=helpers.env(),
            cwd=str(self.tmp),
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        return out

    def _check_identical(self, name, config):
        # The training file in two parts: the Beam workers scan one each.
        with open(os.path.join(helpers.SHARED, name, "train.csv")) as f:
            lines = f.readlines()
        header = lines[:1] if config["format"] == "csv" else []
        body = lines[len(header) :]
        files = []
        for i, part in enumerate(
            (body[: len(body) // 2], body[len(body) // 2 :])
        ):
            path = self.tmp / f"part{i}.csv"
            path.write_text("".join(header + part))
            files.append(str(path))
        local = self._scan(
            sys.executable, config, files, str(self.tmp / "local"), "--local"
        )
        beam = self._scan(
            self.beam_python,
            config,
            files,
            str(self.tmp / "beam"),
            "--",
            "--runner",
            "DirectRunner",
            "--direct_num_workers",
            "2",
            "--direct_running_mode",
            "multi_threading",
        )
        names = sorted(os.listdir(os.path.join(local, "vocab")))
        self.assertEqual(sorted(os.listdir(os.path.join(beam, "vocab"))), names)
        self.assertNotEmpty(names)
        compared = ["statistics.json", "scan.json"]
        compared += [f"vocab/{n}" for n in names]
        _, mismatch, errors = filecmp.cmpfiles(
            local, beam, compared, shallow=False
        )
        self.assertEqual((mismatch, errors), ([], []))
        with open(os.path.join(local, "statistics.json")) as f:
            statistics = json.load(f)
        self.assertGreater(statistics["rows"], 0)
        return statistics, names

    def test_criteo_sample_identical(self):
        statistics, names = self._check_identical(
            "criteo_kaggle_format_8k", CRITEO
        )
        self.assertLen(statistics["numeric"], 13)
        self.assertLen(names, 26)

    def test_avazu_sample_identical(self):
        statistics, names = self._check_identical("avazu_9k", AVAZU)
        self.assertEqual(sorted(statistics["numeric"]), ["C14", "C20", "hour"])
        # Hashed columns have no vocabulary.
        self.assertNotIn("device_ip.txt", names)
