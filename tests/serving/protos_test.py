import keras
import numpy as np
import pytest
from absl.testing import parameterized

from serving import protos
from serving import tensors
from tffm import testing

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the official protos come with TensorFlow",
)
DTYPES = (
    np.float32, np.float64, np.int32, np.int64, np.int8, np.int16,
    np.uint8, np.uint16, np.uint32, np.uint64, np.bool_, np.float16, object,
)  # fmt: skip


def official():
    from tensorflow.core.framework import tensor_pb2
    from tensorflow.core.framework import tensor_shape_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2
    from tensorflow_serving.apis import get_model_status_pb2
    from tensorflow_serving.apis import model_pb2
    from tensorflow_serving.apis import predict_pb2

    return {
        "TensorProto": tensor_pb2.TensorProto,
        "TensorShapeProto": tensor_shape_pb2.TensorShapeProto,
        "TensorInfo": meta_graph_pb2.TensorInfo,
        "SignatureDef": meta_graph_pb2.SignatureDef,
        "ModelSpec": model_pb2.ModelSpec,
        "PredictRequest": predict_pb2.PredictRequest,
        "PredictResponse": predict_pb2.PredictResponse,
        "SignatureDefMap": get_model_metadata_pb2.SignatureDefMap,
        "GetModelMetadataRequest": get_model_metadata_pb2.GetModelMetadataRequest,  # noqa: E501
        "GetModelMetadataResponse": (
            get_model_metadata_pb2.GetModelMetadataResponse
        ),
        "GetModelStatusRequest": get_model_status_pb2.GetModelStatusRequest,
        "GetModelStatusResponse": get_model_status_pb2.GetModelStatusResponse,
        "ModelVersionStatus": get_model_status_pb2.ModelVersionStatus,
    }


def sample(dtype, rng):
    if dtype is object:
        return np.array([["a", "日本"], ["", "x" * 300]], dtype=object)
    if dtype is np.bool_:
        return rng.integers(0, 2, (2, 3)).astype(bool)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        return np.array([[info.min, 0, info.max]], dtype=dtype)
    return np.array([[np.nan, -0.0, 1.5, np.inf]], dtype=dtype)


class WireCompatibilityTest(testing.TestCase):
    def test_descriptors_match_official_fields(self):
        for name, cls in official().items():
            theirs = {f.name: f for f in cls.DESCRIPTOR.fields}
            mine = getattr(protos, name).DESCRIPTOR
            self.assertEqual(mine.full_name, cls.DESCRIPTOR.full_name)
            for field in mine.fields:
                other = theirs[field.name]
                self.assertEqual(
                    (
                        field.number,
                        field.type,
                        field.is_repeated,
                        field.json_name,
                    ),
                    (
                        other.number,
                        other.type,
                        other.is_repeated,
                        other.json_name,
                    ),
                    f"{name}.{field.name}",
                )
                if field.message_type is not None:
                    self.assertEqual(
                        field.message_type.full_name,
                        other.message_type.full_name,
                    )
                if field.enum_type is not None:
                    values = {v.name: v.number for v in field.enum_type.values}
                    self.assertEqual(
                        values,
                        {v.name: v.number for v in other.enum_type.values},
                    )

    @parameterized.parameters(*DTYPES)
    def test_tensor_bytes_round_trip(self, dtype):
        import tensorflow as tf

        array = sample(dtype, self.rng)
        theirs = tf.make_tensor_proto(array)
        data = theirs.SerializeToString()
        mine = protos.TensorProto.FromString(data)
        self.assertEqual(mine.SerializeToString(), data)
        got = tensors.make_ndarray(mine)
        want = tf.make_ndarray(theirs)
        if dtype is object:
            self.assertEqual(got.tolist(), want.tolist())
        else:
            self.assertAllEqual(got, want)
            self.assertEqual(got.dtype, want.dtype)
        # And back: ours parses as theirs to the same values.
        back = type(theirs).FromString(
            tensors.make_tensor_proto(array).SerializeToString()
        )
        if dtype is object:
            self.assertEqual(
                tf.make_ndarray(back).tolist(),
                [[v.encode() for v in r] for r in array.tolist()],
            )
        else:
            self.assertAllEqual(tf.make_ndarray(back), array)

    def test_typed_value_fields_and_splat(self):
        from tensorflow.core.framework import tensor_pb2

        theirs = tensor_pb2.TensorProto(dtype=1, float_val=[2.5])
        theirs.tensor_shape.dim.add().size = 3
        mine = protos.TensorProto.FromString(theirs.SerializeToString())
        self.assertAllEqual(tensors.make_ndarray(mine), [2.5, 2.5, 2.5])
        theirs = tensor_pb2.TensorProto(dtype=9, int64_val=[1, -2, 3])
        theirs.tensor_shape.dim.add().size = 3
        mine = protos.TensorProto.FromString(theirs.SerializeToString())
        self.assertAllEqual(tensors.make_ndarray(mine), [1, -2, 3])

    def test_request_and_response_messages_round_trip(self):
        import tensorflow as tf

        classes = official()
        request = classes["PredictRequest"]()
        request.model_spec.name = "ctr"
        request.model_spec.version.value = 7
        request.model_spec.signature_name = "serving_default"
        request.inputs["city"].CopyFrom(tf.make_tensor_proto(["a", "b"]))
        request.inputs["price"].CopyFrom(tf.make_tensor_proto([1.0, np.nan]))
        request.output_filter.append("probability")
        request.request_options.client_id = b"id"  # a field we do not define
        labelled = classes["ModelSpec"](name="ctr", version_label="stable")
        status = classes["GetModelStatusResponse"]()
        entry = status.model_version_status.add(version=3, state=30)
        entry.status.error_message = "fine"
        signatures = classes["SignatureDefMap"]()
        info = signatures.signature_def["serving_default"].inputs["city"]
        info.name, info.dtype = "city", 7
        info.tensor_shape.dim.add().size = -1
        metadata = classes["GetModelMetadataResponse"]()
        metadata.model_spec.name = "ctr"
        metadata.metadata["signature_def"].Pack(signatures)
        response = classes["PredictResponse"]()
        response.outputs["probability"].CopyFrom(
            tf.make_tensor_proto(np.ones((2, 1), np.float32))
        )
        response.model_spec.name = "ctr"
        messages = [
            ("PredictRequest", request),
            ("ModelSpec", labelled),
            ("GetModelStatusResponse", status),
            ("SignatureDefMap", signatures),
            ("GetModelMetadataResponse", metadata),
            ("PredictResponse", response),
            (
                "GetModelMetadataRequest",
                classes["GetModelMetadataRequest"](
                    model_spec=labelled, metadata_field=["signature_def"]
                ),
            ),
            (
                "GetModelStatusRequest",
                classes["GetModelStatusRequest"](model_spec=labelled),
            ),
        ]
        for name, message in messages:
            data = message.SerializeToString(deterministic=True)
            mine = getattr(protos, name).FromString(data)
            self.assertEqual(
                mine.SerializeToString(deterministic=True), data, name
            )
            again = type(message).FromString(mine.SerializeToString())
            self.assertEqual(again, message, name)
        mine = protos.GetModelMetadataResponse.FromString(
            metadata.SerializeToString()
        )
        unpacked = protos.SignatureDefMap()
        self.assertTrue(mine.metadata["signature_def"].Unpack(unpacked))
        self.assertEqual(
            unpacked.signature_def["serving_default"].inputs["city"].dtype, 7
        )
