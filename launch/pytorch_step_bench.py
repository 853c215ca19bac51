"""PyTorch CPU reference for KDGraph's speed targets (not part of KDGraph; needs `pip install torch`).

Times forward+backward of a CIFAR ResNet (RepDistiller/mdistiller resnet.py architecture) on one
thread at batch 64, and optionally the teacher forward of a distillation step, so the figures can be
put beside `kdgraph bench`:

    python3 launch/pytorch_step_bench.py resnet8x4 [--teacher resnet32x4] [--batch 64] [--steps 10]

Prints one JSON line: median seconds per forward+backward (and teacher forward) and samples/s.
"""
import argparse, json, statistics, time
import torch
import torch.nn as nn
import torch.nn.functional as F

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))

class ResNet(nn.Module):
    def __init__(self, depth, filters, classes=100):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, filters[0], 3, 1, 1, bias=False); self.bn1 = nn.BatchNorm2d(filters[0])
        layers, cin = [], filters[0]
        for i, stride in enumerate([1, 2, 2]):
            blocks = []
            for b in range(n):
                blocks.append(BasicBlock(cin, filters[i + 1], stride if b == 0 else 1)); cin = filters[i + 1]
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.fc = nn.Linear(cin, classes)
    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        f = x.mean((2, 3))
        return f, self.fc(f)

ZOO = {"resnet8": (8, [16, 16, 32, 64]), "resnet20": (20, [16, 16, 32, 64]), "resnet32": (32, [16, 16, 32, 64]),
       "resnet8x4": (8, [32, 64, 128, 256]), "resnet32x4": (32, [32, 64, 128, 256])}

p = argparse.ArgumentParser()
p.add_argument("model"); p.add_argument("--teacher"); p.add_argument("--batch", type=int, default=64)
p.add_argument("--steps", type=int, default=10); p.add_argument("--warmup", type=int, default=3)
a = p.parse_args()
torch.set_num_threads(1)
torch.manual_seed(0)
student = ResNet(*ZOO[a.model]).train()
teacher = ResNet(*ZOO[a.teacher]).eval() if a.teacher else None
x = torch.randn(a.batch, 3, 32, 32)
y = torch.randint(0, 100, (a.batch,))
fb, tf = [], []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    if teacher is not None:
        with torch.no_grad():
            teacher(x)
    t1 = time.perf_counter()
    _, logits = student(x)
    F.cross_entropy(logits, y).backward()
    t2 = time.perf_counter()
    student.zero_grad(set_to_none=True)
    if i >= a.warmup:
        tf.append(t1 - t0); fb.append(t2 - t1)
out = {"framework": f"pytorch {torch.__version__}", "threads": 1, "model": a.model, "batch": a.batch,
       "forward_backward_s": statistics.median(fb), "samples_per_s": a.batch / statistics.median(fb)}
if teacher is not None:
    out["teacher"] = a.teacher
    out["teacher_forward_s"] = statistics.median(tf)
    out["step_samples_per_s"] = a.batch / (statistics.median(fb) + statistics.median(tf))
print(json.dumps(out))
