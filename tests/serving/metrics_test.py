import io
import json

import pytest

from serving.access_log import AccessLog
from serving.metrics import Metrics
from tffm import testing


class MetricsTest(testing.TestCase):
    def test_text_format_parses_with_the_counts(self):
        parser = pytest.importorskip("prometheus_client.parser")
        metrics = Metrics()
        for seconds in (5e-5, 3e-4, 3e-4, 0.2, 20.0):
            metrics.observe("ctr", "predict", "rest", "OK", seconds)
        metrics.observe("ctr", "predict", "grpc", "INVALID_ARGUMENT", 1e-3)
        metrics.observe('we"ird\\', "status", "rest", "NOT_FOUND", 1e-3)
        for rows in (1, 3, 64, 5000):
            metrics.observe_batch("ctr", rows)
        families = {
            f.name: f
            for f in parser.text_string_to_metric_families(
                metrics.render().decode()
            )
        }
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in families.values()
            for s in family.samples
        }

        def value(name, **labels):
            return samples[(name, tuple(sorted(labels.items())))]

        rest = {"model": "ctr", "api": "predict", "transport": "rest"}
        self.assertEqual(
            value("tffm_serving_requests_total", code="OK", **rest), 5
        )
        self.assertEqual(
            value(
                "tffm_serving_errors_total",
                model="ctr",
                code="INVALID_ARGUMENT",
            ),
            1,
        )
        self.assertEqual(
            value(
                "tffm_serving_errors_total", model='we"ird\\', code="NOT_FOUND"
            ),
            1,
        )
        bucket = "tffm_serving_request_latency_seconds_bucket"
        self.assertEqual(value(bucket, le="0.0001", **rest), 1)
        self.assertEqual(value(bucket, le="0.0005", **rest), 3)  # cumulative
        self.assertEqual(value(bucket, le="0.25", **rest), 4)
        self.assertEqual(value(bucket, le="10.0", **rest), 4)
        self.assertEqual(value(bucket, le="+Inf", **rest), 5)
        self.assertEqual(
            value("tffm_serving_request_latency_seconds_count", **rest), 5
        )
        self.assertAlmostEqual(
            value("tffm_serving_request_latency_seconds_sum", **rest),
            5e-5 + 6e-4 + 0.2 + 20.0,
        )
        batch = "tffm_serving_batch_size_bucket"
        self.assertEqual(value(batch, model="ctr", le="1.0"), 1)
        self.assertEqual(value(batch, model="ctr", le="4.0"), 2)
        self.assertEqual(value(batch, model="ctr", le="64.0"), 3)
        self.assertEqual(value(batch, model="ctr", le="+Inf"), 4)
        self.assertEqual(families["tffm_serving_batch_size"].type, "histogram")


class AccessLogTest(testing.TestCase):
    def test_lines_are_json_and_written_by_close(self):
        stream = io.StringIO()
        log = AccessLog(stream, interval=60)  # only `close` writes here
        log.rest("1.2.3.4:5", "POST", "/v1/models/a:predict", 200, "OK", "a",
                 42, 0.0012345)  # fmt: skip
        log.grpc("ipv4:1.2.3.4:5", "predict", "a", "NOT_FOUND", 0.002)
        self.assertEqual(stream.getvalue(), "")
        log.close()
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertLen(lines, 2)
        self.assertEqual(
            {k: v for k, v in lines[0].items() if k != "time"},
            {
                "transport": "rest",
                "remote": "1.2.3.4:5",
                "method": "POST",
                "path": "/v1/models/a:predict",
                "status": 200,
                "code": "OK",
                "model": "a",
                "bytes_out": 42,
                "ms": 1.234,
            },
        )
        self.assertEqual(lines[1]["code"], "NOT_FOUND")
        self.assertEqual(lines[1]["ms"], 2.0)

    def test_a_blocked_stream_drops_the_oldest_and_says_so(self):
        stream = io.StringIO()
        log = AccessLog(stream, interval=60, limit=3)
        for i in range(5):
            log.grpc("peer", "predict", f"m{i}", "OK", 0.001)
        log.close()
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        self.assertEqual([line.get("model") for line in lines[:3]],
                         ["m2", "m3", "m4"])  # fmt: skip
        self.assertEqual(lines[3], {"access_log_dropped": 2})
