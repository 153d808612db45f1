import keras
import numpy as np
import pytest
from absl.testing import parameterized

import tffm
from tffm import testing

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the reference encoder (FeatureEncoder) runs TensorFlow ops",
)

CRITEO = [tffm.Categorical(f"C{i}", hash_bins=10_000) for i in range(1, 27)]
MIXED_BINS = [
    tffm.Categorical("a", hash_bins=1),
    tffm.Categorical("b", hash_bins=7),
    tffm.Categorical("c", hash_bins=2**31 - 2),  # ids up to int32's max
    tffm.Numeric("x"),
    tffm.Categorical("d", hash_bins=1_000),
]
EVERY_KIND = [
    tffm.Categorical("city", vocabulary=["paris", "tokyo"]),
    tffm.Categorical("ad", hash_bins=100),
    tffm.Categorical("user", vocabulary=[11, 22, 33]),
    tffm.Categorical("site", hash_bins=5),
    tffm.MultiCategorical("tags", vocabulary=["x", "y"], max_len=3),
    tffm.MultiCategorical("hist", hash_bins=50, max_len=4),
    tffm.MultiCategorical("hist2", hash_bins=9, max_len=2),
    tffm.Numeric("price"),
]
ONE_VOCAB = [tffm.Categorical("city", vocabulary=["a"]), tffm.Numeric("x")]
ONE_HASHED = [tffm.Categorical("ad", hash_bins=3)]
ONLY_VOCAB = [
    tffm.Categorical("city", vocabulary=["a", "b"]),
    tffm.Categorical("n", vocabulary=[5, 6]),
]


def front_model(features, opset):
    """The raw front on an identity core: the graph outputs the ids."""
    from onnx import TensorProto
    from onnx import helper

    from export.onnx_front import add_raw_front

    inputs, outputs, nodes = [], [], []
    for f in features:
        is_id = not isinstance(f, tffm.Numeric)
        dims = ["batch"] + (["length"] if f.shape else [])
        dtype = TensorProto.INT32 if is_id else TensorProto.FLOAT
        inputs.append(helper.make_tensor_value_info(f.name, dtype, dims))
        outputs.append(
            helper.make_tensor_value_info(f"out_{f.name}", dtype, dims)
        )
        nodes.append(helper.make_node("Identity", [f.name], [f"out_{f.name}"]))
    graph = helper.make_graph(nodes, "core", inputs, outputs)
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)]
    )
    proto.ir_version = 8
    add_raw_front(proto, tuple(features))
    return proto


class RawFrontTest(testing.TestCase):
    @parameterized.named_parameters(
        ("criteo", CRITEO, 17),
        ("mixed_bins", MIXED_BINS, 17),
        ("every_kind", EVERY_KIND, 17),
        ("every_kind_opset18", EVERY_KIND, 18),
        ("criteo_opset18", CRITEO, 18),
        ("one_vocabulary", ONE_VOCAB, 17),
        ("one_hashed", ONE_HASHED, 17),
        ("only_vocabularies", ONLY_VOCAB, 17),
    )
    def test_ids_equal_the_encoders(self, features, opset):
        import onnx
        import onnxruntime as ort

        from export.edge_cases import edge_case_batch
        from serving.feed import OnnxFeed
        from tffm.encoder import to_tensors

        proto = front_model(features, opset)
        onnx.checker.check_model(proto)
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        feed = OnnxFeed(features)
        encoder = tffm.FeatureEncoder(features)
        for size in (1, 2, 300):
            raw = edge_case_batch(features, size, seed=size)
            want = encoder(to_tensors(features, raw))
            names = [f"out_{f.name}" for f in features]
            got = dict(
                zip(features, session.run(names, feed(raw)), strict=True)
            )
            for f, value in got.items():
                expected = np.asarray(want[f.name])
                if isinstance(f, tffm.Numeric):
                    self.assertAllEqual(value, expected)
                    continue
                self.assertEqual(value.dtype, np.int32)
                self.assertEqual(value.shape, expected.shape)
                self.assertAllEqual(value, expected.astype(np.int32))

    def test_criteo_front_shares_its_nodes(self):
        proto = front_model(CRITEO, 17)
        front = [n for n in proto.graph.node if n.op_type != "Identity"]
        # Concat, Reshape, Cast, Mod, Cast, Add, Equal, Where, Reshape, Split.
        self.assertLen(front, 10)
        proto = front_model(EVERY_KIND, 17)
        front = [n for n in proto.graph.node if n.op_type != "Identity"]
        # Scalars: 9 hashed-block nodes + 2 LabelEncoders + Concat, Cast,
        # Split; lists: 2 (vocabulary) + 6 + 6 (hashed).
        self.assertLen(front, 9 + 2 + 3 + 2 + 12)
