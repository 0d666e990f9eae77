"""Keras models exported by tf2onnx, and their TFLite full-int8 versions converted by tf2onnx (MLPerf Tiny style).

TensorFlow stays out of codesign's install: run this with a separate environment that has
``tensorflow-cpu`` and ``tf2onnx``; it writes ``keras/*.onnx`` and ``tflite/*.onnx`` into the wild
zoo's cache, where ``benchmarks/wild_models.py`` picks them up::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf2onnx
    /tmp/tfenv/bin/python benchmarks/wild/keras_zoo.py ~/.cache/codesign/wild

TFLite's int8 converter (representative dataset, ``TFLITE_BUILTINS_INT8``) writes int8 ports and
asymmetric int8 activations; tf2onnx spells them as QDQ with NHWC Transposes and long node names.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: name -> (note) of every model this script writes (wild_models.py reads the notes).
NOTES = {
    "keras/cnn.onnx": "Keras conv/depthwise/BN/residual/GAP net via tf2onnx (NHWC input)",
    "keras/mlp.onnx": "Keras jet-tagger MLP via tf2onnx",
    "keras/ae.onnx": "Keras dense autoencoder via tf2onnx",
    "keras/upcrop.onnx": "Keras 3 Cropping2D + UpSampling2D (Tile repeat) + SeparableConv2D + GlobalMaxPooling2D",
    "keras/conv1dt.onnx": "Keras Conv1DTranspose via tf2onnx (a Slice that takes everything)",
    "tflite/cnn_int8.onnx": "TFLite full-int8 (int8 ports) via tf2onnx",
    "tflite/mlp_int8.onnx": "TFLite full-int8 (int8 ports) via tf2onnx",
    "tflite/ae_int8.onnx": "TFLite full-int8 (int8 ports) via tf2onnx",
    "tflite/cnn_int8_floatio.onnx": "TFLite int8 body, float ports, via tf2onnx",
    "tflite/mlp_int8_floatio.onnx": "TFLite int8 body, float ports, via tf2onnx",
}


def _models():
    import tensorflow as tf

    layers = tf.keras.layers

    def cnn():
        i = tf.keras.Input((16, 16, 3))
        x = layers.Conv2D(8, 3, padding="same", activation="relu")(i)
        x = layers.ReLU()(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
        x = layers.MaxPooling2D(2)(layers.Conv2D(16, 1, activation="relu")(x))
        x = layers.ReLU()(layers.Add()([x, layers.Conv2D(16, 3, padding="same")(x)]))
        return tf.keras.Model(i, layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(x))), (
            16,
            16,
            3,
        )

    def mlp():
        i = tf.keras.Input((16,))
        x = layers.Dense(32, activation="relu")(
            layers.Dense(32, activation="relu")(layers.Dense(64, activation="relu")(i))
        )
        return tf.keras.Model(i, layers.Dense(5, activation="softmax")(x)), (16,)

    def ae():
        i = tf.keras.Input((64,))
        x = layers.Dense(32, activation="relu")(
            layers.Dense(8, activation="relu")(layers.Dense(32, activation="relu")(i))
        )
        return tf.keras.Model(i, layers.Dense(64)(x)), (64,)

    def upcrop():
        """Cropping2D, Keras 3's UpSampling2D (Unsqueeze/Tile/Reshape in ONNX), SeparableConv2D, GlobalMaxPooling2D."""
        i = tf.keras.Input((16, 16, 3))
        x = layers.Cropping2D(((1, 1), (2, 2)))(layers.Conv2D(8, 3, padding="same", activation="relu")(i))
        x = layers.SeparableConv2D(8, 3, activation="relu")(layers.UpSampling2D(2)(x))
        return tf.keras.Model(i, layers.Dense(4, activation="softmax")(layers.GlobalMaxPooling2D()(x))), (16, 16, 3)

    def conv1dt():
        """Conv1DTranspose (tf2onnx ends it in a Slice that takes everything)."""
        i = tf.keras.Input((16, 2))
        x = layers.Conv1DTranspose(4, 2, strides=2)(
            layers.Conv1D(4, 3, strides=2, padding="same", activation="relu")(i)
        )
        return tf.keras.Model(i, layers.Dense(3, activation="softmax")(layers.Flatten()(x))), (16, 2)

    return {"cnn": cnn, "mlp": mlp, "ae": ae, "upcrop": upcrop, "conv1dt": conv1dt}


#: Keras-only models (no TFLite int8 twin)
KERAS_ONLY = frozenset({"upcrop", "conv1dt"})


def main(out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    rng = np.random.default_rng(0)
    (out / "keras").mkdir(parents=True, exist_ok=True)
    (out / "tflite").mkdir(parents=True, exist_ok=True)
    for name, build in _models().items():
        model, shape = build()
        x = rng.normal(size=(256, *shape)).astype(np.float32)
        if name == "ae":  # reconstruct the input
            model.compile("adam", "mse")
            model.fit(x, x, epochs=5, verbose=0)
        else:  # a random linear teacher's classes: confident, separated scores (no near-ties), trained BN statistics
            labels = np.argmax(
                x.reshape(len(x), -1) @ rng.normal(size=(int(np.prod(shape)), model.output_shape[-1])), 1
            )
            model.compile("adam", "sparse_categorical_crossentropy")
            model.fit(x, labels, epochs=30, verbose=0)
        spec = (tf.TensorSpec((1, *shape), tf.float32, name="input"),)
        tf2onnx.convert.from_keras(
            model, input_signature=spec, opset=13, output_path=str(out / "keras" / f"{name}.onnx")
        )
        for suffix, io in (("int8", tf.int8), ("int8_floatio", tf.float32)):
            if (name == "ae" and suffix == "int8_floatio") or name in KERAS_ONLY:
                continue
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = lambda x=x: ([x[k : k + 1]] for k in range(100))
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = io
            flat = out / "tflite" / f"{name}_{suffix}.tflite"
            flat.write_bytes(conv.convert())
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(flat), "--opset", "13",
                            "--output", str(flat.with_suffix(".onnx"))], check=True, capture_output=True)  # fmt: skip
            flat.unlink()
        print(f"wrote keras/{name} and tflite/{name}_*", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "codesign" / "wild")
