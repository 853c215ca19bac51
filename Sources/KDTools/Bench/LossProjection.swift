import Foundation
import KDComm
import KDCore
import KDData
import KDLosses
import KDTensor
import KDTrain

/// What one rank's share of the objective costs in a larger weak-scaling job, measured here.
///
/// In weak scaling each rank keeps its `b` samples, but every relational graph spans the global batch
/// `B = b·N`: a rank's share of an O(B²) term costs O(b·B), of RKD-angle O(b·B²), and the replicated
/// parts (normalisers, VRM's inter-class graph, the spectral eigensolver) O(B²)…O(B³). The networks'
/// cost does not grow, so the loss is what changes the step (docs/scaling.md).
///
/// The projection takes the loss inputs of a real step (student rows on the tape, teacher rows,
/// proxies, labels), tiles their rows to `b·N` samples — each further copy scaled by `1 + 0.01·u` and
/// given noise of 20% of the row's RMS (`u`, the noise ~ N(0, 1)), so no two rows coincide or nearly
/// coincide: copies lie as far from their original as distinct samples do, not in the near-duplicate range
/// where the distance kernels recompute differences exactly, which would time a path real batches rarely
/// take — and times the objective's forward and backward
/// for the shard of rank 0 (`b` samples), exactly the work one rank does between the gather and the
/// networks' backward. The gathers, reduce-scatters and all-reduces are left to the cost model.
public enum LossProjection {
    public struct Point: Equatable, Codable {
        public var ranks: Int
        public var globalBatch: Int
        /// Median seconds of the objective's forward + backward for one rank's share (the sum over its terms).
        public var seconds: Double
        /// The same per term (`kind`, `kind#2` for a repeated kind); nil in results of earlier versions.
        public var terms: [String: Double]? = nil
        /// Bytes of the loss's gathered inputs at this global batch (every `[B·V, ·]` matrix the objective
        /// reads, student and teacher); nil in results of earlier versions.
        public var inputBytes: Double? = nil
        /// The objective's working memory for one rank's share: the tensor pool's high-water mark above
        /// the inputs during one forward + backward of all terms (every tensor and Float64 scratch; the
        /// few Swift arrays of O(B) or O(C²) a term keeps are not counted). Nil in earlier results.
        public var peakBytes: Double? = nil
    }

    /// `inputs` grown to the global batch of `ranks` ranks with `perRank` samples each (rows tiled, copies
    /// perturbed), seen from rank 0.
    public static func tiled(_ inputs: LossInputs, perRank: Int, ranks: Int, seed: UInt64 = 0x5CA1E,
                             comm: Communicator? = nil) -> LossInputs {
        let samples = perRank * ranks
        var rng = KDRandom(keys: seed, UInt64(samples))
        let rows = inputs.rowCount, newRows = samples * inputs.views
        func grow(_ t: Tensor?, trainable: Bool) -> Tensor? {
            guard let t, t.rank == 2, t.shape[0] == rows else { return t }
            let d = t.shape[1]
            let out = Tensor(uninitializedShape: [newRows, d])
            for r in 0..<newRows {
                let src = t.ptr + (r % rows) * d, dst = out.ptr + r * d
                guard r >= rows else { dst.update(from: src, count: d); continue }
                var ss: Float = 0
                for k in 0..<d { ss += src[k] * src[k] }
                let factor = 1 + 0.01 * rng.nextNormal(), noise = 0.2 * (ss / Float(d)).squareRoot()
                for k in 0..<d { dst[k] = src[k] * factor + noise * rng.nextNormal() }
            }
            out.requiresGrad = trainable
            return out
        }
        var labels: [Int]? = nil
        if let l = inputs.labels, !l.isEmpty {
            let n = l.count == rows ? newRows : samples
            labels = (0..<n).map { l[$0 % l.count] }
        }
        let plan = BatchPlan(step: inputs.plan.step, globalSamples: samples, rank: 0, worldSize: ranks,
                             blockSize: inputs.plan.blockSize)
        let grown = LossInputs(plan: plan, views: inputs.views,
                          studentFeatures: grow(inputs.studentFeatures, trainable: true),
                          studentEmbedding: grow(inputs.studentEmbedding, trainable: true),
                          studentLogits: grow(inputs.studentLogits, trainable: true),
                          teacherEmbedding: grow(inputs.teacherEmbedding, trainable: false),
                          teacherLogits: grow(inputs.teacherLogits, trainable: false),
                          proxies: inputs.proxies, labels: labels, step: inputs.step, comm: comm,
                          exact: inputs.exact)
        // Deterministic training: the student rows keep their loss blocks' gradients apart, as gathered.
        if grown.exact {
            for x in [grown.studentFeatures, grown.studentEmbedding, grown.studentLogits] {
                x?.keepLossBlocksApart(grown.lossBlocks.count)
            }
        }
        return grown
    }

    /// Forward + backward of rank 0's share at each world size in `ranks`, with `perRank` samples per
    /// rank, term by term. Each term: one untimed run (buffers), then up to `repeats` timed runs while
    /// they stay under `budgetSeconds` in total; the median is reported, and the point's `seconds` is
    /// their sum.
    ///
    /// `comm` (a world of one, `Communicator.alone()`) times the row-sharded terms as a rank of `N` runs
    /// them — its shard's rows only — with their small all-reduces reduced to this rank (their latency is
    /// the cost model's); nil times every term building the global matrices.
    public static func measure(objective: LossObjective, inputs: LossInputs, perRank: Int, ranks: [Int],
                               repeats: Int = 3, budgetSeconds: Double = 2,
                               comm: Communicator? = nil) throws -> [Point] {
        var points: [Point] = []
        for n in ranks {
            let grown = tiled(inputs, perRank: perRank, ranks: n, comm: comm)
            // Each term on its own (the objective only adds them): the share per term, and their sum.
            var terms: [String: Double] = [:]
            var seen: [String: Int] = [:]
            for term in objective.terms {
                let single = LossObjective(terms: [term])
                func once() throws -> Double { try timeOnce(single, on: grown) }
                let first = try once()
                var times: [Double] = []
                var spent = 0.0
                while times.count < max(1, repeats) && (times.isEmpty || spent + first <= budgetSeconds) {
                    let t = try once()
                    times.append(t); spent += t
                }
                seen[term.kind, default: 0] += 1
                let name = seen[term.kind]! > 1 ? "\(term.kind)#\(seen[term.kind]!)" : term.kind
                terms[name] = PhaseTimer.percentile(times, 0.5)
            }
            let inputs = [grown.studentFeatures, grown.studentEmbedding, grown.studentLogits, grown.teacherEmbedding,
                          grown.teacherLogits].compactMap { $0 }
            let inputBytes = inputs.reduce(0) { $0 + Double($1.count * MemoryLayout<Float>.stride) }
            Tape.reset()
            BufferPool.shared.resetPeak()
            let base = BufferPool.shared.bytesInUse
            _ = try timeOnce(objective, on: grown)
            let peak = Double(BufferPool.shared.peakBytes - base)
            points.append(Point(ranks: n, globalBatch: perRank * n, seconds: terms.values.reduce(0, +), terms: terms,
                                inputBytes: inputBytes, peakBytes: peak))
        }
        Tape.reset()
        return points
    }

    /// Seconds of one forward + backward of `objective` on `inputs` (a fresh tape; the student rows'
    /// gradients cleared after). In deterministic training (`inputs.exact`) also the exact sum of the
    /// student rows' loss-block gradients that the gather's backward does (`ExactSum.reduceScatterRows`),
    /// over `inputs.comm`: the real reduce-scatter on the step's communicator, this rank's conversions only
    /// on a world of one.
    static func timeOnce(_ objective: LossObjective, on inputs: LossInputs) throws -> Double {
        Tape.reset()
        let students = [inputs.studentFeatures, inputs.studentEmbedding, inputs.studentLogits].compactMap { $0 }
        let t0 = monotonicSeconds()
        let share = try objective.evaluate(inputs)
        Tape.backward(share.value)
        if inputs.exact, let comm = inputs.comm {
            // The rows a term read (the step converts the others' zeros too; a term alone reads its own). On a
            // world of one standing in for N ranks, rank 0's rows: it converts back its own rows only, as
            // rank 0 of N does (the reduce-scatter itself is the cost model's).
            for x in students where x.lossBlockGrad != nil || x.grad != nil {
                _ = try exactBlockGradientRows(x, single: x.grad, rowCounts: inputs.plan.rowCounts(views: inputs.views),
                                               globalBlocks: inputs.plan.blocks, comm: comm)
            }
        }
        let t = monotonicSeconds() - t0
        for x in students { x.grad = nil; x.lossBlockGrad = nil }
        return t
    }
}
