/// The fully resolved configuration as YAML (defaults filled in), written to `output.dir/config.yaml`
/// and hashed into checkpoints as the config digest.
extension KDConfig {
    public var resolvedYAML: String {
        func list<T>(_ xs: [T]) -> String { "[" + xs.map { "\($0)" }.joined(separator: ", ") + "]" }
        func q(_ s: String) -> String { "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        var y = "# resolved KDGraph configuration (from \(file))\n"
        y += "seed: \(seed)\nmode: \(mode.rawValue)\n"
        y += """
        data:
          source: \(data.source)
          path: \(q(data.path))
          classes: \(data.classes)
          image_size: \(data.imageSize)
          train_size: \(data.trainSize)
          eval_size: \(data.evalSize)
          global_batch: \(data.globalBatch)
          views: \(data.views)
          augment: \(data.augment)
          virtual_augment: \(data.virtualAugment)
          drop_last: \(data.dropLast)
          eval_fraction: \(data.evalFraction)
          mean: \(list(data.mean))
          std: \(list(data.std))
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
        comm:
          bucket_mb: \(comm.bucketMB)
          overlap: \(comm.overlap)
          timeout_s: \(comm.timeoutS)
        output:
          dir: \(q(outputDir))
        runtime:
          blas_threads: \(blasThreads)
          conv_algorithm: \(convAlgorithm)

        """
        return y
    }
}
