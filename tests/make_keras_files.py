"""Write Keras 3 model files with real Keras, for tests/test_foreign_keras.py.

    KERAS_BACKEND=torch python tests/make_keras_files.py OUTDIR

Keras 3 needs a backend: torch here (its numpy backend imports jax). Writes, in OUTDIR:

    stack.keras, stack.weights.h5, stack_legacy.h5   LSTM 'enc' (softsign) -> LSTM 'dec' (relu) -> Dense
    bi.keras, bi.weights.h5                          Bidirectional(LSTM) named 'bi'
    hard.keras                                       LSTM with Keras 3's hard_sigmoid gates
    gru.keras                                        a GRU, no LSTM
    reference.npz                                    X (batch, time, features) and, per LSTM layer,
                                                     kernel/recurrent_kernel/bias as Keras holds them and
                                                     'enc/Y', Keras's own output of layer 'enc' on X

Exit status 3 when Keras (or its backend) cannot be imported, so the tests can skip.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

C, H, T, B = 5, 4, 7, 3


def main(outdir: str) -> None:
    try:
        import keras
    except Exception as exc:  # keras missing, or its backend (torch) missing
        print(f"keras is not importable: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(3)
    import numpy as np

    keras.utils.set_random_seed(7)
    layers = keras.layers
    X = np.random.default_rng(3).standard_normal((B, T, C)).astype(np.float32)
    ref: dict[str, np.ndarray] = {"X": X}

    def keep(name: str, layer: object) -> None:
        kernel, recurrent, bias = (np.asarray(v) for v in layer.get_weights())
        ref[f"{name}/kernel"], ref[f"{name}/recurrent_kernel"], ref[f"{name}/bias"] = kernel, recurrent, bias

    enc = layers.LSTM(H, name="enc", activation="softsign", return_sequences=True, bias_initializer="random_normal")
    dec = layers.LSTM(3, name="dec", activation="relu", bias_initializer="random_normal")
    stack = keras.Sequential([keras.Input((T, C)), enc, dec, layers.Dense(2, name="out")], name="stack")
    keep("enc", enc)
    keep("dec", dec)
    ref["enc/Y"] = keras.Model(stack.inputs, enc.output).predict(X, verbose=0)
    stack.save(os.path.join(outdir, "stack.keras"))
    stack.save_weights(os.path.join(outdir, "stack.weights.h5"))
    stack.save(os.path.join(outdir, "stack_legacy.h5"))  # Keras 3's legacy HDF5 (warns)

    bi = layers.Bidirectional(layers.LSTM(H), name="bi")
    model = keras.Sequential([keras.Input((T, C)), bi], name="bimodel")
    keep("bi/forward_lstm", bi.forward_layer)
    model.save(os.path.join(outdir, "bi.keras"))
    model.save_weights(os.path.join(outdir, "bi.weights.h5"))

    hard = keras.Sequential([keras.Input((T, C)), layers.LSTM(H, name="hard", recurrent_activation="hard_sigmoid")])
    hard.save(os.path.join(outdir, "hard.keras"))
    gru = keras.Sequential([keras.Input((T, C)), layers.GRU(H, name="g")])
    gru.save(os.path.join(outdir, "gru.keras"))
    np.savez(os.path.join(outdir, "reference.npz"), keras_version=keras.__version__, **ref)


if __name__ == "__main__":
    main(sys.argv[1])
