import Yams

/// The fully resolved configuration as YAML (defaults filled in), written to `output.dir/config.yaml`
/// and hashed into checkpoints as the config digest.
extension KDConfig {
    public var resolvedYAML: String {
        func list<T>(_ xs: [T]) -> String { "[" + xs.map { "\($0)" }.joined(separator: ", ") + "]" }
        func q(_ s: String) -> String {
            "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        }
        var y = "# resolved KDGraph configuration (from \(file))\n"
        y += "seed: \(seed)\nmode: \(mode.rawValue)\n"
        y += """
        data:
          source: \(data.source)
          path: \(q(data.path))
          classes: \(data.classes)
          image_size: \(data.imageSize.map(String.init) ?? "~")
          train_size: \(data.trainSize)
          eval_size: \(data.evalSize)
          global_batch: \(data.globalBatch)
          views: \(data.views)
          augment: \(data.augment)
          flip: \(data.flip)
          crop_padding: \(data.cropPadding)
          virtual_augment: \(data.virtualAugment)
          drop_last: \(data.dropLast)
          eval_fraction: \(data.evalFraction)
          mean: \(data.mean.map(list) ?? "~")
          std: \(data.std.map(list) ?? "~")
          prefetch: \(data.prefetch)
        teacher:
          kind: \(teacher.kind)
          model: \(teacher.model)
          checkpoint: \(q(teacher.checkpoint))
          init: \(teacher.initialization)
          embeddings: \(q(teacher.embeddings))
          prompts: \(q(teacher.prompts))
          clip_scale: \(teacher.clipScale)
          hidden: \(list(teacher.hidden))
          cache:
            rounds: \(teacher.cache.rounds)
            path: \(q(teacher.cache.path))
            dtype: \(teacher.cache.dtype)
        student:
          model: \(student.model)
          embed_dim: \(student.embedDim)
          sync_bn: \(student.syncBN)
          hidden: \(list(student.hidden))

        """
        if loss.isEmpty { y += "loss: []\n" } else {
            y += "loss:\n"
            for l in loss {
                let extra = l.params.keys.sorted().map { ", \($0): \(l.params[$0]!)" }.joined()
                y += "  - {kind: \(l.kind), weight: \(l.weight)\(extra)}\n"
            }
        }
        y += """
        optim:
          kind: \(optim.kind)
          lr: \(optim.lr)
          momentum: \(optim.momentum)
          nesterov: \(optim.nesterov)
          weight_decay: \(optim.weightDecay)
          decoupled: \(optim.decoupled)
          decay_bn_bias: \(optim.decayBNAndBias)
          betas: \(list(optim.betas))
          eps: \(optim.eps)
          schedule: \(optim.schedule)
          warmup_steps: \(optim.warmupSteps)
          milestones: \(list(optim.milestones))
          gamma: \(optim.gamma)
        train:
          epochs: \(train.epochs)
          steps: \(train.steps)
          log_every: \(train.logEvery)
          eval_every: \(train.evalEvery)
          checkpoint_every: \(train.checkpointEvery)
          sync_check_every: \(train.syncCheckEvery)
          skip_nonfinite: \(train.skipNonfinite)
          deterministic: \(train.deterministic)
          block_size: \(train.blockSize)
        comm:
          bucket_mb: \(comm.bucketMB)
          overlap: \(comm.overlap)
          timeout_s: \(comm.timeoutS)
        output:
          dir: \(q(outputDir))
        runtime:
          blas_threads: \(blasThreads)
          conv_algorithm: \(convAlgorithm)
          memory_limit_gb: \(memoryLimitGB)

        """
        return y
    }
}

extension KDConfig {
    /// The keys whose values differ between two resolved configs (`kdgraph.config` of a checkpoint and
    /// the current run), as `key: old → new`, in file order; keys only one of them has show `(none)`.
    /// A digest alone says that something changed, not what.
    public static func differences(from old: String, to new: String) -> [String] {
        func flatten(_ yaml: String) -> [(String, String)] {
            guard let root = try? Yams.compose(yaml: yaml) else { return [] }
            var out: [(String, String)] = []
            func walk(_ n: Node, _ path: String) {
                switch n {
                case .mapping(let m):
                    for (k, v) in m { walk(v, path.isEmpty ? (k.string ?? "?") : "\(path).\(k.string ?? "?")") }
                case .sequence(let seq) where seq.contains(where: { $0.mapping != nil }):
                    for (i, e) in seq.enumerated() { walk(e, "\(path).\(i)") }
                case .sequence(let seq):
                    out.append((path, "[" + seq.map { $0.string ?? "?" }.joined(separator: ", ") + "]"))
                case .scalar(let s): out.append((path, s.string))
                case .alias: out.append((path, "*alias"))
                }
            }
            walk(root, "")
            return out
        }
        let a = flatten(old), b = flatten(new)
        let aMap = Dictionary(a, uniquingKeysWith: { x, _ in x }), bMap = Dictionary(b, uniquingKeysWith: { x, _ in x })
        var keys = b.map(\.0)
        keys += a.map(\.0).filter { bMap[$0] == nil }
        return keys.compactMap { k in
            let x = aMap[k], y = bMap[k]
            guard x != y else { return nil }
            return "\(k): \(abbreviated(x ?? "(none)", limit: 60)) → \(abbreviated(y ?? "(none)", limit: 60))"
        }
    }
}
