import KDComm
import KDCore
import KDLosses
import KDTensor

extension LossContract {
    /// The share contract on a real communicator (`kdgraph-mpi-checks losses.`, Tests/mpi/run.sh): a
    /// deterministic global batch (`LossCase`'s, rows sample-major) goes through a small linear student
    /// `features = X W_f`, `embedding = X W_e`, `logits = X W_z` on each rank's rows; student outputs
    /// are gathered with the differentiable `allGatherRows`, teacher ones with `allGatherRowsNoGrad`;
    /// each rank evaluates its share with the communicator and runs backward; parameter gradients are
    /// all-reduced (SUM). The all-reduced loss and term values, each rank's local-row gradients and the
    /// parameter gradients must equal the one-process values (the whole batch, computed on every rank)
    /// to `shareTolerance`. Every rank of `comm` must call it.
    public static func multiRankShares(_ comm: Communicator, _ objective: LossObjective, batch b: Int, views v: Int,
                                       step: Int = 0) throws {
        let x = LossCase(b: b, views: v, seed: 23)
        let n = b * v
        var rng = KDRandom(keys: 23, UInt64(b), UInt64(v))
        let input = Tensor.randn([n, 6], rng: &rng)
        let widths = [x.sFeat.shape[1], x.sEmb.shape[1], x.zs.shape[1]]
        let weights0 = widths.map { Tensor.randn([6, $0], std: 0.5, rng: &rng) }

        func inputs(_ students: [Tensor], _ tEmb: Tensor, _ zt: Tensor, _ plan: BatchPlan,
                    _ comm: Communicator?) -> LossInputs {
            LossInputs(plan: plan, views: v, studentFeatures: students[0], studentEmbedding: students[1],
                       studentLogits: students[2], teacherEmbedding: tEmb, teacherLogits: zt, proxies: x.proxies,
                       labels: x.labels, step: step, comm: comm)
        }
        func copies(_ ts: [Tensor]) -> [Tensor] {
            ts.map { t -> Tensor in let c = t.copy(); c.requiresGrad = true; return c }
        }

        // One process: the whole batch.
        Tape.reset()
        defer { Tape.reset() }
        let xRef = copies([input])[0], wRef = copies(weights0)
        let ref = try objective.evaluate(inputs(try wRef.map { try matmul(xRef, $0) }, x.tEmb, x.zt,
                                                BatchPlan(globalSamples: b), nil))
        let refLoss = Double(ref.value.item)
        ref.value.backward()

        // Distributed: this rank's samples, gathered, its share.
        Tape.reset()
        let plan = BatchPlan(globalSamples: b, rank: comm.rank, worldSize: comm.size)
        let counts = plan.rowCounts(views: v)
        let mine = (plan.share.lowerBound * v)..<(plan.share.upperBound * v)
        let xl = copies([rows(input, mine)])[0], ws = copies(weights0)
        let gathered = try ws.map { try allGatherRows(try matmul(xl, $0), comm: comm, counts: counts) }
        let tEmb = try allGatherRowsNoGrad(rows(x.tEmb, mine), comm: comm, counts: counts)
        let zt = try allGatherRowsNoGrad(rows(x.zt, mine), comm: comm, counts: counts)
        let share = try objective.evaluate(inputs(gathered, tEmb, zt, plan, comm))
        share.value.backward()
        let loss = try comm.allReduce(Double(share.value.item), op: .sum)
        var termSums = share.terms.map { $0.value }
        try comm.allReduce(&termSums, op: .sum)
        var weightErr = 0.0
        for (w, wr) in zip(ws, wRef) {
            var g = w.grad?.array ?? [Float](repeating: 0, count: w.count)
            try comm.allReduce(&g, op: .sum)
            weightErr = max(weightErr, relativeError(g, wr.grad?.array ?? [Float](repeating: 0, count: w.count)))
        }
        if !mine.isEmpty && xl.grad == nil { throw Failure("rank \(comm.rank): no gradient reached the local rows") }
        let rowErr = mine.isEmpty ? 0 : relativeError(xl.grad!.array, rows(xRef.grad!, mine).array)
        let lossErr = abs(loss - refLoss) / max(1, abs(refLoss))
        var termErr = 0.0
        for (t, s) in zip(ref.terms, termSums) { termErr = max(termErr, abs(s - t.value) / max(1, abs(t.value))) }
        if lossErr > shareTolerance || termErr > shareTolerance || rowErr > shareTolerance
            || weightErr > shareTolerance {
            throw Failure("relative errors vs one process: loss \(lossErr) (\(loss) vs \(refLoss)), terms \(termErr), "
                          + "local rows \(rowErr), parameters \(weightErr) (bound \(shareTolerance))")
        }
    }

    /// Rows `range` of `t` (a copy).
    static func rows(_ t: Tensor, _ range: Range<Int>) -> Tensor {
        let w = t.count / max(t.shape[0], 1)
        let out = Tensor(uninitializedShape: [range.count] + t.shape.dropFirst())
        if range.count > 0 { out.ptr.update(from: t.ptr + range.lowerBound * w, count: range.count * w) }
        return out
    }

    /// The multi-rank check of every configuration of `d` (`configurations`), over the layouts of the
    /// in-process check: uneven shards, three samples (an empty shard on four ranks), two views.
    public static func multiRankShares(_ comm: Communicator, _ c: Configuration) throws {
        let term = try makeLossTerm(c.entry)
        for (b, v) in layouts(term.needs.contains(.twoViews) ? 2 : 1) {
            do {
                try multiRankShares(comm, LossObjective(terms: [term]), batch: b, views: v, step: 17)
            } catch {
                throw Failure("b \(b) views \(v): \(error)")
            }
        }
    }
}
