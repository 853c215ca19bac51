"""Inference peers for KDGraph's teacher forward (not part of KDGraph; needs torch, and onnxruntime and/or
openvino, all from PyPI).

The teacher of `kdgraph bench --config C.yaml` (the CIFAR ResNet of `pytorch_step_bench.py`, random
weights: the time does not depend on them) exported once to ONNX (opset 17, fixed batch) and run by:
  ONNX Runtime : one intra-op and one inter-op thread, sequential execution, every graph optimisation;
  OpenVINO     : CPU, one inference thread, f32 inference precision, the latency hint.
Each: `--warmup` untimed runs, then the median of `--steps` timed runs of one batch of `--batch` images.
A package that cannot be imported is reported as skipped, with the reason; the other still runs.

    python3 launch/inference_teacher_bench.py --teacher resnet32x4 --classes 100 --image-size 32 --batch 64

`kdgraph bench --config C.yaml --pytorch on` runs it beside the PyTorch step when this interpreter imports
either package, and prints the teacher forward of each. Prints one JSON line: {"peers": [...]}, each
peer {"framework", "threads", "median_s"} or {"framework", "skipped"}.
"""
import argparse, json, os, statistics, sys, tempfile, time, warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_step_bench import ResNet, ZOO  # noqa: E402  (the same model definition as the step's twin)


def timed(run, warmup, steps):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter(); run(); times.append(time.perf_counter() - t0)
    return statistics.median(times)


def onnxruntime_peer(path, x, a):
    try:
        import onnxruntime as ort
    except ImportError as e:
        return {"framework": "onnxruntime", "skipped": f"cannot import onnxruntime ({e})"}
    o = ort.SessionOptions()
    o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    return {"framework": f"onnxruntime {ort.__version__}", "threads": 1,
            "median_s": timed(lambda: s.run(None, {name: x}), a.warmup, a.steps)}


def openvino_peer(path, x, a):
    try:
        import openvino as ov
    except ImportError as e:
        return {"framework": "openvino", "skipped": f"cannot import openvino ({e})"}
    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {
        "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return {"framework": f"openvino {ov.__version__.split('-')[0]}", "threads": 1,
            "median_s": timed(lambda: request.infer({0: x}), a.warmup, a.steps)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, choices=sorted(ZOO))
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = ResNet(*ZOO[a.teacher], a.classes).eval()
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    peers = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "teacher.onnx")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)   # the TorchScript exporter: no torch.export needed
            torch.onnx.export(model, (x,), path, opset_version=17, input_names=["images"],
                              output_names=["embedding", "logits"], dynamo=False)
        xn = x.numpy().astype(np.float32)
        peers.append(onnxruntime_peer(path, xn, a))
        peers.append(openvino_peer(path, xn, a))
    print(json.dumps({"peers": peers}))


if __name__ == "__main__":
    main()
