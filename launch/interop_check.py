#!/usr/bin/env python3
"""Reproduce KDGraph forward passes in PyTorch from exported weights.

Usage:  python3 launch/interop_check.py EXPORT_DIR [EXPORT_DIR ...]
        python3 launch/interop_check.py --export-torch OUT_DIR MODEL [CLASSES CHANNELS HEIGHT WIDTH]

Each EXPORT_DIR is written by `Interop.export` (KDModels) and holds:
  model.safetensors   weights in PyTorch names and layouts (conv [Cout, Cin, kh, kw])
  input.npy           float32 NHWC input batch
  logits.npy          KDGraph's logits  [N, C]
  feature.npy         KDGraph's pooled penultimate features [N, F]
  manifest.json       {"model", "classes", "input_channels", "image_size", "hidden_sizes", "layout"}

The script builds the same architecture in PyTorch (definitions follow RepDistiller's resnet.py and
wrn.py), loads the weights with `safetensors.torch.load_file` + `load_state_dict(strict=True)`, runs
it in eval mode on the same input (NHWC -> NCHW) and compares logits and features. When the export
holds grads.safetensors it also runs one training-mode pass (batch statistics) and compares the
logits and the gradient of L = sum(logits * R) for every parameter. Exit status 1 if a relative
error (max |a - b| / max |b|) exceeds 1e-4 (1e-3 for gradients).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from checkpoint_check import FILE_KEY, WEIGHTS_KEY, digest_problem

TOLERANCE = 1e-4
# Gradients pass through several BatchNorm backward steps in float32 on both sides.
GRAD_TOLERANCE = 1e-3


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """RepDistiller resnet.py BasicBlock."""

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        return F.relu(out + residual)


class ResNet(nn.Module):
    """RepDistiller resnet.py ResNet (AvgPool2d(8) written as a global mean: equal on 32x32)."""

    def __init__(self, depth, num_filters, num_classes, in_channels):
        super().__init__()
        n = (depth - 2) // 6
        self.inplanes = num_filters[0]
        self.conv1 = nn.Conv2d(in_channels, num_filters[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(num_filters[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(num_filters[1], n)
        self.layer2 = self._make_layer(num_filters[2], n, stride=2)
        self.layer3 = self._make_layer(num_filters[3], n, stride=2)
        self.fc = nn.Linear(num_filters[3], num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        feature = x.mean(dim=(2, 3))
        return feature, self.fc(feature)


class WideBlock(nn.Module):
    """RepDistiller wrn.py BasicBlock (pre-activation)."""

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = None if self.equalInOut else nn.Conv2d(
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x):
        if not self.equalInOut:
            x = self.relu1(self.bn1(x))
            out = x
        else:
            out = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(out)))
        out = self.conv2(out)
        return (x if self.equalInOut else self.convShortcut(x)) + out


class NetworkBlock(nn.Module):
    def __init__(self, nb_layers, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
            for i in range(nb_layers)])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, num_classes, widen_factor, in_channels):
        super().__init__()
        ch = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_channels, ch[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(ch[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        feature = out.mean(dim=(2, 3))
        return feature, self.fc(feature)


class MLP(nn.Module):
    """KDGraph's mlp: rows flattened in NHWC order (channels fastest)."""

    def __init__(self, input_size, hidden_sizes, num_classes):
        super().__init__()
        layers, d = [], input_size
        for h in hidden_sizes:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(d, num_classes)

    def forward(self, x):
        feature = self.layers(x)
        return feature, self.fc(feature)


def build(manifest):
    name, classes, cin = manifest["model"], manifest["classes"], manifest["input_channels"]
    small, wide = [16, 16, 32, 64], [32, 64, 128, 256]
    if name == "resnet8x4":
        return ResNet(8, wide, classes, cin)
    if name == "resnet32x4":
        return ResNet(32, wide, classes, cin)
    if name.startswith("resnet"):
        return ResNet(int(name[6:]), small, classes, cin)
    if name.startswith("wrn_"):
        _, depth, k = name.split("_")
        return WideResNet(int(depth), classes, int(k), cin)
    if name == "mlp":
        h, w = manifest["image_size"]
        return MLP(h * w * cin, manifest["hidden_sizes"], classes)
    raise SystemExit(f"unknown model {name!r}")


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def check(directory):
    with open(f"{directory}/manifest.json") as f:
        manifest = json.load(f)
    model = build(manifest)
    state = load_file(f"{directory}/model.safetensors")
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.from_numpy(np.load(f"{directory}/input.npy"))
    if manifest["model"] == "mlp":
        x = x.reshape(x.shape[0], -1)
    else:
        x = x.permute(0, 3, 1, 2).contiguous()   # NHWC -> NCHW
    with torch.no_grad():
        feature, logits = model(x)
    e_logits = relative_error(logits.numpy(), np.load(f"{directory}/logits.npy"))
    e_feature = relative_error(feature.numpy(), np.load(f"{directory}/feature.npy"))
    report = {"dir": directory, "model": manifest["model"], "tensors": len(state),
              "logits_rel_err": e_logits, "feature_rel_err": e_feature}
    ok = e_logits <= TOLERANCE and e_feature <= TOLERANCE
    if os.path.exists(f"{directory}/grads.safetensors"):
        # One training-mode step: batch statistics, L = sum(logits * R), gradients of every parameter.
        model.train()
        r = torch.from_numpy(np.load(f"{directory}/grad_weights.npy"))
        train_logits = model(x)[1]
        (train_logits * r).sum().backward()
        expected = load_file(f"{directory}/grads.safetensors")
        e_grad, worst = 0.0, ""
        for name, p in model.named_parameters():
            e = relative_error(expected[name].numpy(), p.grad.numpy())
            if e > e_grad:
                e_grad, worst = e, name
        e_train = relative_error(np.load(f"{directory}/train_logits.npy"), train_logits.detach().numpy())
        report.update({"train_logits_rel_err": e_train, "grad_rel_err": e_grad, "grad_worst": worst})
        ok = ok and e_train <= TOLERANCE and e_grad <= GRAD_TOLERANCE
    if os.path.exists(f"{directory}/checkpoint.safetensors"):
        # A KDGraph training checkpoint: the weights file is exactly the state_dict (strict load as it
        # is); the training state sits in checkpoint.state.safetensors, paired by the weights' checksum.
        weights = f"{directory}/checkpoint.safetensors"
        state = f"{directory}/checkpoint.state.safetensors"
        build(manifest).load_state_dict(load_file(weights), strict=True)
        with safe_open(weights, framework="pt") as f:
            w_meta = f.metadata()
        with safe_open(state, framework="pt") as f:
            s_meta = f.metadata()
            optim = [k for k in f.keys() if k.startswith("optim.")]
        problems = [p for p in (digest_problem(weights), digest_problem(state)) if p]
        report["checkpoint_tensors"] = len(load_file(weights))
        report["checkpoint_state_tensors"] = len(optim)
        report["checkpoint_optim_step"] = s_meta.get("optim.step_count")
        report["checkpoint_checksum"] = "; ".join(problems) or "ok"
        ok = (ok and not problems and w_meta.get(FILE_KEY) is not None and len(optim) > 0
              and s_meta.get(WEIGHTS_KEY) == w_meta.get(FILE_KEY))
    report["ok"] = ok
    print(json.dumps(report))
    return ok


def export_torch(directory, name, classes=10, channels=3, height=32, width=32, hidden=(32, 16)):
    """The reverse direction: a PyTorch model (random init, two training-mode passes so the running
    statistics are not trivial) saved with safetensors.torch.save_file, an NHWC input and its eval-mode
    logits/features, for KDGraph's `Interop.reproduceTorch(directory:)`."""
    os.makedirs(directory, exist_ok=True)
    manifest = {"model": name, "classes": classes, "input_channels": channels,
                "image_size": [height, width], "hidden_sizes": list(hidden), "layout": "NHWC"}
    torch.manual_seed(0)
    model = build(manifest)
    with torch.no_grad():
        for p in model.parameters():           # move BN affine params away from 1/0 as well
            p.add_(0.05 * torch.randn_like(p))
    x = torch.randn(4, height, width, channels)
    def prep(t):
        return t.reshape(t.shape[0], -1) if name == "mlp" else t.permute(0, 3, 1, 2).contiguous()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(prep(torch.randn(4, height, width, channels)))
    model.eval()
    with torch.no_grad():
        feature, logits = model(prep(x))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{directory}/torch_model.safetensors")
    np.save(f"{directory}/input.npy", x.numpy().astype(np.float32))
    np.save(f"{directory}/torch_logits.npy", logits.numpy())
    np.save(f"{directory}/torch_feature.npy", feature.numpy())
    with open(f"{directory}/manifest.json", "w") as f:
        json.dump(manifest, f)
    print(json.dumps({"exported": directory, "model": name, "tensors": len(model.state_dict())}))


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    if argv[1] == "--export-torch":
        # --export-torch OUT_DIR MODEL [CLASSES CHANNELS HEIGHT WIDTH]
        out, name = argv[2], argv[3]
        extra = [int(v) for v in argv[4:8]]
        export_torch(out, name, *extra)
        return 0
    results = [check(d) for d in argv[1:]]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
