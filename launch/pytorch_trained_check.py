#!/usr/bin/env python3
"""PyTorch -> KDGraph from the command line, on a network trained in PyTorch (issue 29 item 2).

Usage:  python3 launch/pytorch_trained_check.py --data DIR --out DIR [--kdgraph BIN] [--model resnet8]
                                                [--epochs 8] [--config configs/quickstart-teacher.yaml]

1. Trains `--model` (launch/interop_check.py's RepDistiller definitions) in PyTorch on the npy folder
   `--data` (train_images.npy uint8 N x H x W x C, train_labels.npy; `kdgraph export-data` writes one),
   normalised with each channel's mean and standard deviation over the training images (pixel / 255):
   what KDGraph computes when a config sets no data.mean/data.std.
2. Saves the state_dict with safetensors.torch.save_file (no KDGraph metadata) and PyTorch's own eval-mode
   top-1 and logits on test_images.npy.
3. Runs `kdgraph eval --config C --set student.model=M --set data.source=npy --set data.path=DIR
   --checkpoint W` and `kdgraph predict` (same flags, --images test_images.npy), as docs/interop.md shows.
4. Checks: the normalisation KDGraph printed equals the files' statistics (1e-5: both are the mean over the
   training pixels, summed in double here and in KDGraph, printed to float precision); KDGraph's top-1 is
   PyTorch's; the predicted logits agree with PyTorch's to 1e-4 relative (max |a - b| / max |b|: float32
   convolutions summed in another order, as launch/interop_check.py) and their argmax on every image where
   PyTorch's top two logits are more than 1e-3 x max|logit| apart (closer ones may swap on a last-bit
   difference; the count is printed).
Prints one JSON line; exit status 1 when a check fails. Needs torch, numpy and safetensors (not CI).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_check import build  # noqa: E402  (the same architectures as the interop check)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="npy folder (train_/test_ images and labels)")
    ap.add_argument("--out", required=True, help="folder for the weights, logits and the check's files")
    ap.add_argument("--kdgraph", default=".build/release/kdgraph")
    ap.add_argument("--config", default="configs/quickstart-teacher.yaml")
    ap.add_argument("--model", default="resnet8")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    os.makedirs(args.out, exist_ok=True)

    def load(split):
        x = np.load(f"{args.data}/{split}_images.npy")
        if x.ndim == 3:
            x = x[..., None]
        return x, np.load(f"{args.data}/{split}_labels.npy").astype(np.int64)

    xtr, ytr = load("train")
    xte, yte = load("test")
    pixels = xtr.reshape(-1, xtr.shape[-1]).astype(np.float64) / 255.0
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)

    def prep(x):
        t = torch.from_numpy(((x.astype(np.float32) / 255.0 - mean) / std).astype(np.float32))
        return t.permute(0, 3, 1, 2).contiguous()

    classes = int(max(ytr.max(), yte.max()) + 1)
    model = build({"model": args.model, "classes": classes, "input_channels": xtr.shape[-1],
                   "image_size": list(xtr.shape[1:3]), "hidden_sizes": []})
    steps = args.epochs * (len(xtr) // args.batch)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    xt, yt = prep(xtr), torch.from_numpy(ytr)
    start = time.time()
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(xtr))
        for i in range(len(xtr) // args.batch):
            idx = order[i * args.batch:(i + 1) * args.batch]
            x = xt[idx]
            flip = torch.rand(len(idx)) < 0.5
            x[flip] = x[flip].flip(3)
            loss = F.cross_entropy(model(x)[1], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    train_s = time.time() - start
    model.eval()
    with torch.inference_mode():
        logits = model(prep(xte))[1].numpy()
    torch_top1 = float((logits.argmax(1) == yte).mean())
    weights = f"{args.out}/{args.model}_from_pytorch.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)

    common = ["--config", args.config, "--set", f"student.model={args.model}", "--set", "data.source=npy",
              "--set", f"data.path={args.data}", "--checkpoint", weights]
    ev = subprocess.run([args.kdgraph, "eval", *common], capture_output=True, text=True)
    if ev.returncode != 0:
        sys.exit(f"kdgraph eval failed ({ev.returncode}): {ev.stderr.strip()[-500:]}")
    evj = json.loads(ev.stdout.strip().splitlines()[-1])
    out_logits = f"{args.out}/kdgraph_logits.npy"
    pr = subprocess.run([args.kdgraph, "predict", *common, "--images", f"{args.data}/test_images.npy",
                         "--out", out_logits], capture_output=True, text=True)
    if pr.returncode != 0:
        sys.exit(f"kdgraph predict failed ({pr.returncode}): {pr.stderr.strip()[-500:]}")
    prj = json.loads(pr.stdout.strip().splitlines()[-1])
    kd = np.load(out_logits)

    scale = float(np.max(np.abs(logits)))
    rel = float(np.max(np.abs(kd - logits)) / max(scale, 1e-12))
    top2 = np.sort(logits, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-3 * scale
    argmax_same = int((kd.argmax(1) == logits.argmax(1)).sum())
    clear_same = bool((kd.argmax(1) == logits.argmax(1))[clear].all())
    stats_err = max(float(np.max(np.abs(np.array(evj["mean"]) - mean))),
                    float(np.max(np.abs(np.array(evj["std"]) - std))),
                    float(np.max(np.abs(np.array(prj["mean"]) - mean))),
                    float(np.max(np.abs(np.array(prj["std"]) - std))))
    checks = {"normalisation": stats_err <= 1e-5, "top1": abs(evj["top1"] - torch_top1) < 0.5 / len(yte),
              "logits": rel <= 1e-4, "argmax": clear_same}
    print(json.dumps({"model": args.model, "epochs": args.epochs, "train_seconds": round(train_s, 1),
                      "torch_top1": torch_top1, "kdgraph_eval_top1": evj["top1"], "samples": evj["samples"],
                      "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std],
                      "kdgraph_mean": evj["mean"], "kdgraph_std": evj["std"], "logits_rel_error": rel,
                      "argmax_agree": f"{argmax_same}/{len(yte)}", "near_ties": int((~clear).sum()),
                      "checks": checks}))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
