"""PyTorch CPU reference for KDGraph's distillation step (not part of KDGraph; needs `pip install torch`).

The same full step as `kdgraph bench --config C.yaml`, set up as a PyTorch expert would on a CPU:
`channels_last` tensors and weights, the frozen teacher under `torch.inference_mode()` in eval mode,
one intra-op thread per rank, DistributedDataParallel (gloo) for the gradient all-reduce, and the
student's embedding rows all-gathered with autograd (`torch.distributed.nn.functional.all_gather`) so
that RKD spans the global batch — the hand-written all-gather of a PyTorch DDP distillation script.

One step, per rank:
  teacher  : teacher logits and pooled embedding of the rank's images (inference mode)
  forward  : student forward, all-gather of student features and teacher embeddings,
             KD (T² KL, mean over the rank's rows) + RKD distance/angle over the gathered rows
  backward : loss.backward() (DDP all-reduces the gradients, bucketed, overlapped)
  optimizer: SGD with momentum and weight decay

Every rank computes RKD over the whole gathered batch (identical on every rank); the all-gather's
backward sums the ranks' row gradients and DDP averages over ranks, so the gradient is the one-process
gradient of KD + RKD over the global batch (KDGraph's share contract, docs/losses.md).

    python3 launch/pytorch_step_bench.py --teacher resnet32x4 --student resnet8x4 --per-rank 64 \
        --ranks 2 --kd 1,4,0 --rkd 1,25,0

`kdgraph bench --config C.yaml --pytorch on` builds this command line from the config and prints both
steps side by side. Prints one JSON line (rank 0): medians over the measured steps of each phase and
of the step, and samples/s (global and per rank).
"""
import argparse, json, os, socket, statistics, time, warnings
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class BlockBatchNorm2d(nn.BatchNorm2d):
    """Block (ghost) BatchNorm, the twin of KDGraph's `student.batch_norm: block`: in training each block of
    `rows` samples is normalised with its own statistics (what plain BatchNorm gives a DDP process whose
    batch is one block); evaluation uses the running statistics. Running statistics are updated once per
    block here (KDGraph averages the blocks' statistics once per step): the same work, a timing twin."""
    rows = 0

    def forward(self, x):
        if not self.training or self.rows <= 0 or x.shape[0] <= self.rows:
            return super().forward(x)
        return torch.cat([super(BlockBatchNorm2d, self).forward(c) for c in x.split(self.rows)])


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = BlockBatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = BlockBatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), BlockBatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """CIFAR ResNet of RepDistiller/mdistiller `resnet.py` (KDGraph's model zoo, docs/models.md)."""
    def __init__(self, depth, filters, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, filters[0], 3, 1, 1, bias=False); self.bn1 = BlockBatchNorm2d(filters[0])
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


ZOO = {"resnet8": (8, [16, 16, 32, 64]), "resnet14": (14, [16, 16, 32, 64]), "resnet20": (20, [16, 16, 32, 64]),
       "resnet32": (32, [16, 16, 32, 64]), "resnet56": (56, [16, 16, 32, 64]),
       "resnet8x4": (8, [32, 64, 128, 256]), "resnet32x4": (32, [32, 64, 128, 256])}


def pdist(e, eps=1e-12):
    """RKD's pairwise distances (lenscloth/RKD `metric/utils.py`): clamped, zero diagonal."""
    sq = (e * e).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt()
    return d * (1 - torch.eye(len(e), dtype=e.dtype))


def rkd_distance(s, t):
    with torch.no_grad():
        td = pdist(t); td = td / td[td > 0].mean()
    d = pdist(s); d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, td)


def rkd_angle(s, t):
    with torch.no_grad():
        tv = F.normalize(t.unsqueeze(0) - t.unsqueeze(1), p=2, dim=2)
        ta = torch.bmm(tv, tv.transpose(1, 2)).view(-1)
    sv = F.normalize(s.unsqueeze(0) - s.unsqueeze(1), p=2, dim=2)
    sa = torch.bmm(sv, sv.transpose(1, 2)).view(-1)
    return F.smooth_l1_loss(sa, ta)


def kd_loss(zs, zt, temperature, ce_weight, labels):
    t = temperature
    loss = F.kl_div(F.log_softmax(zs / t, 1), F.softmax(zt / t, 1), reduction="batchmean") * t * t
    return loss + ce_weight * F.cross_entropy(zs, labels) if ce_weight else loss


def gather_rows(x, world, differentiable):
    if world == 1:
        return x
    if differentiable:   # backward: the ranks' gradients of each slice summed (a reduce-scatter)
        import torch.distributed.nn.functional as dnn
        with warnings.catch_warnings():   # "deprecated" since 2.x, in favour of a private module
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dnn.all_gather(x), 0)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x)
    return torch.cat(parts, 0)


def worker(rank, a, port, queue):
    torch.set_num_threads(1)
    if a.ranks > 1:
        try:
            os.sched_setaffinity(0, {rank % os.cpu_count()})   # as mpirun --bind-to core
        except (AttributeError, OSError):
            pass
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(a.seed + rank)
    mf = torch.channels_last
    student = ResNet(*ZOO[a.student], a.classes).to(memory_format=mf).train()
    for m in student.modules():
        if isinstance(m, BlockBatchNorm2d):
            m.rows = a.bn_block
    teacher = ResNet(*ZOO[a.teacher], a.classes).to(memory_format=mf).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model = nn.parallel.DistributedDataParallel(student) if a.ranks > 1 else student
    opt = torch.optim.SGD(student.parameters(), lr=a.lr, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.per_rank, 3, a.image_size, a.image_size).contiguous(memory_format=mf)
    y = torch.randint(0, a.classes, (a.per_rank,))
    kd_w, kd_t, kd_ce = a.kd
    rkd_w, rkd_dw, rkd_aw = a.rkd
    phases = {k: [] for k in ("teacher", "forward", "backward", "optimizer", "step")}
    for i in range(a.warmup + a.steps):
        if a.ranks > 1:
            dist.barrier()
        t0 = time.perf_counter()
        with torch.inference_mode():
            t_emb, t_logits = teacher(x)
        t_emb, t_logits = t_emb.clone(), t_logits.clone()   # inference tensors out of inference mode
        t1 = time.perf_counter()
        s_feat, s_logits = model(x)
        loss = s_logits.new_zeros(())
        if kd_w:
            loss = loss + kd_w * kd_loss(s_logits, t_logits, kd_t, kd_ce, y)
        if rkd_w and (rkd_dw or rkd_aw):
            gs = gather_rows(s_feat, a.ranks, True)
            gt = gather_rows(t_emb, a.ranks, False)
            if rkd_dw:
                loss = loss + rkd_w * rkd_dw * rkd_distance(gs, gt)
            if rkd_aw:
                loss = loss + rkd_w * rkd_aw * rkd_angle(gs, gt)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i >= a.warmup:
            for k, v in (("teacher", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2),
                         ("optimizer", t4 - t3), ("step", t4 - t0)):
                phases[k].append(v)
    med = {k: statistics.median(v) for k, v in phases.items()}
    if a.ranks > 1:
        worst = torch.tensor([med[k] for k in phases], dtype=torch.float64)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)   # the slowest rank sets the pace
        med = dict(zip(phases, worst.tolist()))
        dist.destroy_process_group()
    if rank == 0:
        queue.put({"framework": f"pytorch {torch.__version__}", "threads_per_rank": 1, "ranks": a.ranks,
                   "memory_format": "channels_last", "teacher_mode": "inference_mode", "student": a.student,
                   "teacher": a.teacher, "per_rank_batch": a.per_rank, "global_batch": a.per_rank * a.ranks,
                   "steps": a.steps, "warmup": a.warmup, "final_loss": float(loss.detach()),
                   "phases_median_s": {k: med[k] for k in ("teacher", "forward", "backward", "optimizer")},
                   "step_median_s": med["step"],
                   "samples_per_s": a.per_rank * a.ranks / med["step"],
                   "samples_per_s_per_rank": a.per_rank / med["step"]})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, choices=sorted(ZOO))
    p.add_argument("--student", required=True, choices=sorted(ZOO))
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--per-rank", type=int, default=64)
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--kd", default="0,4,0", help="weight,temperature,ce_weight (weight 0: no KD)")
    p.add_argument("--rkd", default="0,25,50", help="weight,distance_weight,angle_weight (weight 0: no RKD)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--bn-block", type=int, default=0,
                   help="block BatchNorm over blocks of this many samples (0: plain per-process BatchNorm)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    a.kd = [float(v) for v in a.kd.split(",")]
    a.rkd = [float(v) for v in a.rkd.split(",")]
    if len(a.kd) != 3 or len(a.rkd) != 3:
        p.error("--kd and --rkd take three comma-separated numbers")
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    if a.ranks == 1:
        worker(0, a, 0, queue)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
        mp.spawn(worker, args=(a, port, queue), nprocs=a.ranks, join=True)
    print(json.dumps(queue.get()))


if __name__ == "__main__":
    main()
