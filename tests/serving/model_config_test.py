import concurrent.futures
import threading
import time

import numpy as np

from serving.batching import Batcher
from serving.errors import ServingError
from serving.model_config import BatchingParameters
from serving.model_config import parse_text_proto
from serving.model_config import read_batching_parameters
from serving.model_config import read_model_config
from serving.model_config import read_monitoring_config
from serving.model_config import read_ssl_config
from tffm import testing


class ModelConfigTest(testing.TestCase):
    def write(self, text, name="models.config"):
        path = self.tmp / name
        path.write_text(text)
        return str(path)

    def setUp(self):
        super().setUp()
        import pathlib
        import tempfile

        self.tmp = pathlib.Path(tempfile.mkdtemp())

    def test_ssl_config_reads_pem_text_and_checks_it(self):
        pem = '"-----BEGIN X-----\\nAAAA\\n-----END X-----\\n"'
        path = self.write(
            f"server_key: {pem}\nserver_cert: {pem}\nclient_verify: false\n",
            "ssl.config",
        )
        config = read_ssl_config(path)
        self.assertEqual(
            config.server_key, "-----BEGIN X-----\nAAAA\n-----END X-----\n"
        )
        self.assertFalse(config.client_verify)
        self.assertEqual(config.custom_ca, "")
        for text, message in (
            (f"server_key: {pem}\nserver_cert: 'x'", "must hold the PEM"),
            (
                f"server_key: {pem}\nserver_cert: {pem}\nclient_verify: true",
                "needs `custom_ca`",
            ),
            (f"server_key: {pem}\nserver_crt: {pem}", "server_crt"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                read_ssl_config(self.write(text, "bad.config"))

    def test_monitoring_config_path_default_and_disabled(self):
        for text, expected in (
            ('prometheus_config { enable: true path: "/p/m" }', "/p/m"),
            (
                "prometheus_config { enable: true }",
                "/monitoring/prometheus/metrics",
            ),
            ("prometheus_config { enable: false path: '/p' }", None),
            ("", None),
        ):
            path = self.write(text, "monitoring.config")
            self.assertEqual(read_monitoring_config(path), expected, text)
        with self.assertRaisesRegex(ValueError, "must start with '/'"):
            read_monitoring_config(
                self.write("prometheus_config { enable: true path: 'p' }")
            )

    def test_reads_what_export_writes_and_policies(self):
        path = self.write(
            """
            # a comment
            model_config_list {
              config {
                name: "ctr"
                base_path: "/models/ctr"
                model_platform: "tensorflow"
                model_version_policy { specific { versions: 1 versions: 3 } }
                version_labels { key: 'stable' value: 1 }
                version_labels { key: "canary" value: 3 }
              }
              config: { name: 'b' base_path: "rel" model_version_policy:
                        { latest: { num_versions: 2 } } }
              config { name: "c" base_path: "/c"
                       model_version_policy { all {} } }
            }
            """
        )
        ctr, b, c = read_model_config(path)
        self.assertEqual(ctr.labels, {"stable": 1, "canary": 3})
        self.assertEqual(ctr.wanted([1, 2, 3, 4]), [1, 3])
        self.assertEqual(b.wanted([1, 2, 3, 4]), [3, 4])
        self.assertTrue(b.base_path.endswith("/rel"))
        self.assertEqual(c.wanted([2, 1]), [1, 2])

    def test_errors_name_the_problem(self):
        for text, message in (
            (
                "model_config_list { config { name: 'a' } }",
                "needs a `base_path`",
            ),
            (
                "model_config_list { config { nme: 'a' } }",
                r"unknown field\(s\) \['nme'\]",
            ),
            (
                "model_config_list { config { name: 'a' base_path: 'b' }",
                "missing '}'",
            ),
            (
                "model_config_list { config { name: 'a' base_path: 'b' ",
                "missing",
            ),
            ("model_config_list { config { name: @ } }", "cannot parse"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                read_model_config(self.write(text))

    def test_batching_parameters(self):
        path = self.write(
            "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\n"  # noqa: E501
            "max_enqueued_batches { value: 4 }\nnum_batch_threads { value: 2 }\n"  # noqa: E501
            "allowed_batch_sizes: 8\nallowed_batch_sizes: 64\n",
            "batching.config",
        )
        params = read_batching_parameters(path)
        self.assertEqual(
            (params.max_batch_size, params.batch_timeout_micros),
            (64, 500),
        )
        self.assertEqual(params.allowed_batch_sizes, (8, 64))
        self.assertEqual(
            parse_text_proto("a: [1, 2] b { c: 'x\\'y' } d: true"),
            {"a": [1, 2], "b": [{"c": ["x'y"]}], "d": [True]},
        )
        with self.assertRaisesRegex(ValueError, "max_batch_size"):
            read_batching_parameters(
                self.write("max_batch_size { value: 0 }", "bad.config")
            )


class BatcherTest(testing.TestCase):
    def test_batches_concurrent_requests_and_splits_results(self):
        seen = []

        def run(feeds):
            seen.append(len(feeds["x"]))
            time.sleep(0.01)
            return {"y": feeds["x"][:, :1] * 2.0}

        params = BatchingParameters(
            max_batch_size=32, batch_timeout_micros=20_000,
            max_enqueued_batches=100, num_batch_threads=1,
        )  # fmt: skip
        batcher = Batcher(run, params, {"x": -1.0})
        futures = []
        for i in range(20):
            width = 1 + i % 3  # list inputs of different lengths get padded
            x = np.full((2, width), float(i), np.float32)
            futures.append((i, batcher.submit({"x": x}, 2)))
        for i, future in futures:
            self.assertAllEqual(future.result(10)["y"], [[2.0 * i]] * 2)
        batcher.close()
        self.assertLess(len(seen), 20)  # requests were merged
        self.assertLessEqual(max(seen), 32)

    def test_full_queue_and_oversized_requests_are_refused_at_once(self):
        release = threading.Event()

        def run(feeds):
            release.wait(10)
            return {"y": feeds["x"]}

        params = BatchingParameters(
            max_batch_size=4, batch_timeout_micros=0,
            max_enqueued_batches=2, num_batch_threads=1,
        )  # fmt: skip
        batcher = Batcher(run, params, {"x": 0.0})
        x = np.zeros((4, 1), np.float32)
        with self.assertRaisesRegex(ServingError, "larger than maximum"):
            batcher.submit({"x": np.zeros((5, 1), np.float32)}, 5)
        accepted = [batcher.submit({"x": x}, 4)]
        time.sleep(0.1)  # the worker holds the first batch
        accepted += [batcher.submit({"x": x}, 4) for _ in range(2)]
        start = time.monotonic()
        with self.assertRaises(ServingError) as error:
            batcher.submit({"x": x}, 4)
        self.assertLess(time.monotonic() - start, 0.5)  # no hang
        # TF Serving's shared batch scheduler: UNAVAILABLE, this wording.
        self.assertEqual(error.exception.code, "UNAVAILABLE")
        self.assertEqual(
            error.exception.message,
            "The batch scheduling queue to which this task was submitted "
            "is full",
        )
        release.set()
        done, _ = concurrent.futures.wait(accepted, 10)
        self.assertLen(done, 3)
        batcher.close()

    def test_cancelled_request_is_dropped_and_the_rest_answered(self):
        # A gRPC deadline cancels its future while the task waits in a
        # batch; the worker thread must answer the others and live on.
        release = threading.Event()
        ran = []

        def run(feeds):
            release.wait(10)
            ran.append(feeds["x"][:, 0].tolist())
            return {"y": feeds["x"] * 2.0}

        params = BatchingParameters(
            max_batch_size=8, batch_timeout_micros=0,
            max_enqueued_batches=10, num_batch_threads=1,
        )  # fmt: skip
        batcher = Batcher(run, params, {"x": 0.0})

        def submit(value):
            return batcher.submit({"x": np.full((1, 1), value, np.float32)}, 1)

        first = submit(1.0)
        time.sleep(0.1)  # the only worker now holds the first batch
        queued = [submit(2.0), submit(3.0), submit(4.0)]
        self.assertTrue(queued[1].cancel())
        release.set()
        self.assertAllEqual(first.result(5)["y"], [[2.0]])
        self.assertAllEqual(queued[0].result(5)["y"], [[4.0]])
        self.assertAllEqual(queued[2].result(5)["y"], [[8.0]])
        self.assertTrue(queued[1].cancelled())
        self.assertEqual(ran[1], [2.0, 4.0])  # the cancelled row never ran
        for value in (5.0, 6.0, 7.0):  # later requests are still answered
            self.assertAllEqual(submit(value).result(5)["y"], [[2 * value]])
        batcher.close()

    def test_a_failing_batch_answers_its_requests_and_the_thread_lives(self):
        calls = []

        def run(feeds):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            return {"y": feeds["x"]}

        params = BatchingParameters(
            max_batch_size=8, batch_timeout_micros=0,
            max_enqueued_batches=10, num_batch_threads=1,
        )  # fmt: skip
        batcher = Batcher(run, params, {"x": 0.0})
        x = np.zeros((1, 1), np.float32)
        with self.assertRaises(ServingError) as error:
            batcher.submit({"x": x}, 1).result(5)
        self.assertEqual(error.exception.code, "INTERNAL")
        self.assertIn("boom", error.exception.message)
        one = batcher.submit({"x": x}, 1)
        self.assertAllEqual(one.result(5)["y"], x)
        batcher.close()
