"""Sample from an `rnnlab export` ONNX file with onnxruntime and NumPy only (no PyTorch).

    rnnlab export runs/mine --format onnx -o model.onnx
    python docs/onnx_sample.py model.onnx --prompt 'def ' --length 300 --temperature 0.8 --seed 0

The file holds one graph, ids (B, T) + state -> logits (B, T, V) + state; the vocabulary is in
its metadata. Prime with one call over the prompt, then one call per character, state carried.
"""

import argparse
import json

import numpy as np
import onnxruntime as ort


def sample(path, prompt="", length=300, temperature=0.8, seed=None):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    vocab = json.loads(meta["rnnlab.vocab"])  # {"mode": "char" | "byte", "symbols": [...]}
    model = json.loads(meta["rnnlab.model"])
    names = meta["rnnlab.state"].split(",")  # "h", "h,c" or "h,prev"
    symbols = vocab["symbols"]
    if vocab["mode"] == "byte":
        ids = list(prompt.encode("utf-8"))
    else:
        index = {s: i for i, s in enumerate(symbols)}
        missing = sorted(set(prompt) - set(index))
        if missing:
            raise SystemExit(f"characters not in the model's vocabulary: {missing}")
        ids = [index[c] for c in prompt] or [index.get("\n", 0)]
    shape = (model["num_layers"], 1, model["hidden_size"])
    state = {n: np.zeros(shape, dtype=np.float32) for n in names}
    rng = np.random.default_rng(seed)

    def run(x):  # x: (1, T) ids -> logits of the last position, and the new state
        out = session.run(None, {"ids": np.asarray([x], dtype=np.int64), **state})
        state.update(zip(names, out[1:], strict=True))
        return out[0][0, -1].astype(np.float64)  # (V,)

    logits = run(ids)  # the prompt pass
    new = []
    for _ in range(length):
        if temperature == 0:
            token = int(np.argmax(logits))
        else:
            p = np.exp((logits - logits.max()) / temperature)
            token = int(rng.choice(len(p), p=p / p.sum()))
        new.append(token)
        logits = run([token])  # the step
    if vocab["mode"] == "byte":
        return bytes(new).decode("utf-8", errors="replace")
    return "".join(symbols[i] for i in new)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="an .onnx file written by rnnlab export")
    p.add_argument("--prompt", default="")
    p.add_argument("--length", type=int, default=300)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=None)
    a = p.parse_args()
    print(a.prompt + sample(a.model, a.prompt, a.length, a.temperature, a.seed))
