import KDCore
import KDData
import KDModels
import KDTensor

/// Evaluation results, reduced over ranks.
public struct EvalResult: Equatable {
    public var top1: Double
    public var top5: Double
    public var loss: Double
    public var samples: Int
}

extension Trainer {
    /// A NaN or Inf in an evaluation input would reach the logits (ReLU and pooling propagate it) and
    /// make the reported loss and accuracy meaningless: refused, naming the file and the sample.
    func refuseNonFinite(_ batch: Batch) throws {
        let perSample = batch.images.count / max(1, batch.count)
        guard let bad = (0..<batch.images.count).first(where: { !batch.images.ptr[$0].isFinite }) else { return }
        throw TrainError.io(path: data.evalName, message: "evaluation sample \(batch.indices[bad / perSample]) "
                            + "holds a non-finite value (\(batch.images.ptr[bad])): the evaluation would report "
                            + "a meaningless loss and accuracy; fix or drop that sample")
    }

    /// Top-1/top-5 accuracy and mean cross-entropy of the student on the held-out split; each rank
    /// evaluates its contiguous share of every evaluation batch, the counts are summed over ranks.
    public func evaluate(model: (any Classifier)? = nil) throws -> EvalResult {
        let m = model ?? student
        let wasTraining = m.training
        m.train(false)
        defer { m.train(wasTraining) }
        let batches = EvalSharding.rankBatches(count: data.evalCount, batch: config.data.globalBatch,
                                               rank: comm.rank, worldSize: comm.size)
        var sums = [0.0, 0.0, 0.0, 0.0]   // top-1 correct, top-5 correct, Σ CE, samples
        var scratch: [Double] = []
        // Deterministic training: row-invariant GEMMs, and Σ CE summed exactly over the samples (below).
        let deterministic = config.train.deterministic
        var losses: [Double] = []
        try SampleBlocks.with(rowsPerBlock: deterministic ? 1 : nil) { try withNoGrad {
            for (plan, indices) in batches where !indices.isEmpty {
                let batch = data.evalBatch(indices, plan: plan)
                try refuseNonFinite(batch)
                let (_, logits) = try m(batch.images)
                let C = logits.shape[1]
                if scratch.count < C { scratch = [Double](repeating: 0, count: C) }
                for (row, label) in batch.labels.enumerated() {
                    // The training loss's kernels: CE = −ln σ(z)_y, rank = classes ahead of y (ties → lower).
                    let z = logits.ptr + row * C
                    let rank = rowLabelRank(z, count: C, label: label)
                    if rank == 0 { sums[0] += 1 }
                    if rank < 5 { sums[1] += 1 }
                    let ce = rowCrossEntropy(z, count: C, label: label, scale: 0, grad: nil, scratch: &scratch)
                    if deterministic { losses.append(ce) } else { sums[2] += ce }
                    sums[3] += 1
                }
            }
        } }
        if deterministic {   // counts are exact in Double; Σ CE one fixed-point sum over every sample
            let total = try ExactSum.sum(losses, globalBlocks: max(1, data.evalCount), comm: comm)
            sums[2] = comm.rank == 0 ? total : 0
        }
        try comm.allReduce(&sums, op: .sum)
        let n = max(sums[3], 1)
        return EvalResult(top1: sums[0] / n, top5: sums[1] / n, loss: sums[2] / n, samples: Int(sums[3]))
    }
}
