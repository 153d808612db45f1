import concurrent.futures
import time
import types

from serving.errors import ServingError
from serving.grpc_service import GrpcServer
from tffm import testing


class _Context:
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


class GrpcWaitTest(testing.TestCase):
    def test_a_batched_call_waits_no_longer_than_the_clients_deadline(self):
        server = types.SimpleNamespace(timeout=30.0)  # --rest_api_timeout
        future = concurrent.futures.Future()  # a batch that never runs
        start = time.monotonic()
        with self.assertRaises(ServingError) as error:
            GrpcServer.wait(server, future, _Context(0.2))
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual(error.exception.code, "DEADLINE_EXCEEDED")
        self.assertTrue(future.cancelled())  # dropped from its batch

    def test_without_a_client_deadline_the_server_timeout_applies(self):
        server = types.SimpleNamespace(timeout=0.2)
        future = concurrent.futures.Future()
        with self.assertRaises(ServingError) as error:
            GrpcServer.wait(server, future, _Context(None))
        self.assertIn("--rest_api_timeout_in_ms", error.exception.message)
        done = concurrent.futures.Future()
        done.set_result({"y": 1})
        self.assertEqual(
            GrpcServer.wait(server, done, _Context(None)), {"y": 1}
        )
