"""Test fixture: a folder of float32 feature matrices and a foundation-model-like teacher.

usage: make_feature_data.py OUTDIR
Writes train_features.npy (512×16), train_labels.npy (int64), teacher_embeddings.npy (512×24, a
noisy linear image of the features) and prompts.npy (3×5×24, noisy images of the class means).
"""
import sys
import numpy as np

out = sys.argv[1]
g = np.random.default_rng(0)
N, C, D, Dt, K = 512, 5, 16, 24, 3
means = g.standard_normal((C, D)) * 1.5
y = g.integers(0, C, N)
x = (means[y] + g.standard_normal((N, D))).astype(np.float32)
W = g.standard_normal((D, Dt)).astype(np.float32)
t = (x @ W + 0.1 * g.standard_normal((N, Dt))).astype(np.float32)
P = np.stack([means @ W + 0.3 * g.standard_normal((C, Dt)) for _ in range(K)]).astype(np.float32)
np.save(f"{out}/train_features.npy", x)
np.save(f"{out}/train_labels.npy", y.astype(np.int64))
np.save(f"{out}/teacher_embeddings.npy", t)
np.save(f"{out}/prompts.npy", P)
