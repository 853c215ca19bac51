import KDCore
import KDLosses
import KDModels
import KDTensor

/// Multi-rank checks of KDModels: SyncBatchNorm makes a data-parallel model behave exactly like the
/// one-process model on the global batch.
enum ModelChecks {
    static let all: [MultiRankCheck] = [
        MultiRankCheck("models.syncbn_resnet8_even_slices") { comm in try syncBNMatchesOneProcess(comm, batch: 8) },
        MultiRankCheck("models.syncbn_resnet8_uneven_slices") { comm in try syncBNMatchesOneProcess(comm, batch: 10) },
    ]

    /// max |a − b| / max(max |b|, 1e-6).
    static func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, scale = 1e-6
        for (x, y) in zip(a, b) { diff = max(diff, Double(abs(x - y))); scale = max(scale, Double(abs(y))) }
        return diff / scale
    }

    /// Rank r owns rows [r·B/N, (r+1)·B/N) of the global batch (the sampler's slicing).
    static func slice(_ rank: Int, _ size: Int, _ batch: Int) -> Range<Int> {
        (rank * batch / size)..<((rank + 1) * batch / size)
    }

    /// resnet8 (training mode) on a global batch: the reference runs the whole batch locally on each
    /// rank; the distributed model (SyncBN) runs only this rank's rows, scales its mean cross-entropy to
    /// its share of the global mean, and all-reduces (SUM) the loss and the parameter gradients.
    /// Logit rows, loss, gradients and running statistics must agree to 1e-4 relative.
    static func syncBNMatchesOneProcess(_ comm: Communicator, batch: Int) throws {
        let (h, w, c, classes) = (8, 8, 3, 5)
        var rng = KDRandom(keys: 2024, UInt64(batch))
        let x = Tensor.randn([batch, h, w, c], rng: &rng)
        let labels = (0..<batch).map { _ in rng.nextInt(below: classes) }
        let tol = 1e-4

        // One-process reference on the full batch.
        let reference = try ModelZoo.make(name: "resnet8", classes: classes, inputChannels: c, seed: 42)
        Tape.reset()
        let refLogits = try reference(x).logits
        let refLoss = try crossEntropyLoss(logits: refLogits, labels: labels).value
        refLoss.backward()

        // Distributed: this rank's rows, SyncBN.
        let model = try ModelZoo.make(name: "resnet8", classes: classes, inputChannels: c, seed: 42)
        model.setStatisticsReducer(CommStatisticsReducer(comm: comm))
        let rows = slice(comm.rank, comm.size, batch)
        let rowSize = h * w * c
        let local = Tensor(shape: [rows.count, h, w, c],
                           data: UnsafeBufferPointer(start: x.ptr + rows.lowerBound * rowSize,
                                                     count: rows.count * rowSize))
        let logits = try model(local).logits
        // This rank's share of the mean over the global batch: Σ_{rows} CE / batch.
        let share = try crossEntropyLoss(logits: logits, labels: Array(labels[rows]), count: batch).value
        var loss = Double(share.item)
        share.backward()
        try comm.allReduce(&loss, count: 1, op: .sum)

        let refRows = Array(refLogits.array[(rows.lowerBound * classes)..<(rows.upperBound * classes)])
        let eLogits = relativeError(logits.array, refRows)
        guard eLogits <= tol else {
            throw CheckFailure("logits rows \(rows) differ from one-process by \(eLogits) (relative)")
        }
        let eLoss = abs(loss - Double(refLoss.item)) / max(abs(Double(refLoss.item)), 1e-6)
        guard eLoss <= tol else {
            throw CheckFailure("loss \(loss) vs one-process \(refLoss.item) (relative \(eLoss))")
        }

        for ((name, p), (_, q)) in zip(model.namedParameters(), reference.namedParameters()) {
            guard let g = p.grad, let gRef = q.grad else { throw CheckFailure("no gradient for \(name)") }
            try comm.allReduce(g.ptr, count: g.count, op: .sum)
            let e = relativeError(g.array, gRef.array)
            guard e <= tol else {
                throw CheckFailure("gradient of \(name) differs from one-process by \(e) (relative)")
            }
        }
        for ((name, b), (_, bRef)) in zip(model.namedBuffers(), reference.namedBuffers()) {
            let e = relativeError(b.array, bRef.array)
            guard e <= tol else { throw CheckFailure("buffer \(name) differs from one-process by \(e) (relative)") }
        }
        model.zeroGrad(); reference.zeroGrad()
    }
}
