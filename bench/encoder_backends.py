"""The router's encoder on CPU: today's torch path vs ONNX Runtime (fp32 and int8 dynamic quantisation).

Measured in one process, interleaved round by round so every path sees the same machine load, all on
1 thread (the server's default):
  - speed at batch 1 and batch 64 (ratio to torch);
  - cosine of each path's embeddings to torch fp32;
  - routing decisions of a kNN router on the MMLU-Pro sample's test split, each path vs torch.
The server would offer a path only at >= 2x the speed and >= 99% identical decisions.

Needs ``onnx`` and ``onnxruntime`` (not routerzoo dependencies: ``pip install onnx onnxruntime``); the
model is exported with ``torch.onnx.export`` (sentence-transformers' ``backend="onnx"`` goes through
optimum, whose exporter does not import with the transformers version routerzoo pins).

    python bench/encoder_backends.py [--workdir DIR] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def export(folder: str, out: Path) -> tuple[Path, Path]:
    """``model.onnx`` (fp32) and ``model.int8.onnx`` (dynamic int8 weights) of the encoder's transformer."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    fp32, int8 = out / "model.onnx", out / "model.int8.onnx"
    if int8.exists():
        return fp32, int8
    model = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]

    class Hidden(torch.nn.Module):  # keyword arguments: the positional order of forward() changed across versions
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    enc = AutoTokenizer.from_pretrained(folder)(["hello world", "a longer text"], padding=True, return_tensors="pt")
    axes = {k: {0: "batch", 1: "tokens"} for k in [*names, "last_hidden_state"]}
    torch.onnx.export(Hidden(model), tuple(enc[k] for k in names), str(fp32), input_names=names,
                      output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


class OnnxEncoder:
    """Mean pooling + L2 normalisation over an ONNX transformer, as the torch path computes them."""

    def __init__(self, path: Path, folder: str, model_id: str, max_length: int = 256):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.model_id, self.normalize, self.max_length = model_id, True, max_length

    def encode(self, texts) -> np.ndarray:
        from routerzoo.routers.encoders.encoder import truncate_chars

        out = []
        for start in range(0, len(texts), 64):
            enc = self.tokenizer(truncate_chars(list(texts[start:start + 64]), self.max_length), padding=True,
                                 truncation=True, max_length=self.max_length, return_tensors="np")
            hidden = self.session.run(None, {k: enc[k].astype(np.int64) for k in self.inputs})[0]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rz-bench-encoder-"))
    os.environ["ROUTERZOO_CACHE"] = str(work / "cache")

    from routerzoo.data.dataset import save_dataset
    from routerzoo.data.importers import import_files
    from routerzoo.demo import sample_dir
    from routerzoo.routers.encoders.encoder import Encoder, resolve_encoder_path, set_threads
    from routerzoo.routers.kinds.knn import KNNConfig
    from routerzoo.training.train import TrackingConfig, train_router

    set_threads(1)
    ds = import_files(sorted(sample_dir().glob("*.zip")), "mmlu-pro", name="bench")
    data = save_dataset(ds, work / "data")
    router = train_router("knn", KNNConfig(), data, work / "knn", tracking=TrackingConfig(enabled=False),
                          progress=False).router
    folder = resolve_encoder_path(router.encoder)
    fp32, int8 = export(folder, work)
    paths = {"torch": Encoder(router.encoder, cache_dir="", show_progress=False, max_cached=0),
             "onnx-fp32": OnnxEncoder(fp32, folder, router.encoder),
             "onnx-int8": OnnxEncoder(int8, folder, router.encoder)}
    prompts = list(ds.outcome_matrix().prompts)
    for enc in paths.values():
        enc.encode(prompts[:4])
    one: dict[str, list] = {k: [] for k in paths}
    many: dict[str, list] = {k: [] for k in paths}
    i = 0
    for r in range(args.rounds):
        text = [f"{prompts[i % len(prompts)]} ({r})"]
        i += 1
        for k, enc in paths.items():
            t0 = time.perf_counter()
            enc.encode(text)
            one[k].append(time.perf_counter() - t0)
        if r % 5 == 0:
            batch = [f"{p} ({r})" for p in prompts[i:i + 64]]
            i += 64
            for k, enc in paths.items():
                t0 = time.perf_counter()
                enc.encode(batch)
                many[k].append(64 / (time.perf_counter() - t0))

    test = list(ds.outcome_matrix("test").prompts)
    emb, decisions = {}, {}
    for k, enc in paths.items():
        emb[k] = enc.encode(test)
        router.set_encoder(enc)
        decisions[k] = np.asarray(router.decide(router.predict(test), router.policy))
    t1, t64 = statistics.median(one["torch"]), statistics.median(many["torch"])
    print(f"encoder {router.encoder}, 1 thread; {len(test)} test prompts; {args.rounds} interleaved rounds")
    print(f"{'path':10s} {'batch 1':>10s} {'speed':>7s} {'batch 64':>14s} {'speed':>7s} {'cosine min/mean':>16s} {'same decisions':>15s}")
    for k in paths:
        b1, b64 = statistics.median(one[k]), statistics.median(many[k])
        cos = (emb[k] * emb["torch"]).sum(1)
        same = float(np.mean(decisions[k] == decisions["torch"]))
        print(f"{k:10s} {b1 * 1000:8.1f}ms {t1 / b1:6.2f}x {b64:8.1f} prompt/s {b64 / t64:6.2f}x "
              f"{cos.min():7.4f}/{cos.mean():.4f} {same:14.1%}")


if __name__ == "__main__":
    main()
