import KDComm
import KDCore
import KDData
import KDLosses
import KDTrain
import KDTensor

/// Multi-rank checks of the losses' share contract. A deterministic global batch (uneven shards; one
/// rank empty in the tiny case) goes through a small linear student `features = X W_f`,
/// `embedding = X W_e`, `logits = X W_z` on each rank's rows; student outputs are gathered with the
/// differentiable `allGatherRows`, teacher ones with `allGatherRowsNoGrad`; each rank evaluates its
/// share and runs backward; parameter gradients are all-reduced (SUM). The all-reduced loss and term
/// values, each rank's local-row gradients and the parameter gradients must equal the one-process
/// values (the whole batch, one shard, computed locally on every rank) to 1e-5 relative.
enum LossChecks {
    static let all: [MultiRankCheck] = [
        MultiRankCheck("losses.kd_ce_share") {
            try shareCheck($0, "[{kind: kd, ce_weight: 0.5}]", batch: 11, views: 1)
        },
        MultiRankCheck("losses.rkd_share") { try shareCheck($0, "[{kind: rkd}]", batch: 11, views: 1) },
        MultiRankCheck("losses.rkd_capped_angle_share") {
            try shareCheck($0, "[{kind: rkd, angle_anchors: 4, seed: 9}]", batch: 11, views: 1, step: 17)
        },
        MultiRankCheck("losses.rkd_sampled_partners_share") {
            try shareCheck($0, "[{kind: rkd, angle_partners: 5, angle_anchors: 7, seed: 9}]", batch: 11, views: 1,
                           step: 17)
        },
        MultiRankCheck("losses.prg_share") { try shareCheck($0, "[{kind: prg}]", batch: 11, views: 1) },
        MultiRankCheck("losses.vrm_share") { try shareCheck($0, "[{kind: vrm, q: 0.25}]", batch: 9, views: 2) },
        MultiRankCheck("losses.spectral_share") { try shareCheck($0, "[{kind: spectral, k: 3}]", batch: 10, views: 1) },
        MultiRankCheck("losses.spectral_iterative_share") {   // 48 rows, block 10: Krylov cycles on gathered products
            let before = SpectralSolverStatistics.current
            try shareCheck($0, "[{kind: spectral, k: 3, solver: iterative}]", batch: 48, views: 1)
            let after = SpectralSolverStatistics.current
            // The dense fallback would hide wrong products: both solves (reference, share) must converge.
            guard after.fallbacks == before.fallbacks, after.iterative - before.iterative == 2 else {
                throw CheckFailure("iterative solves \(after.iterative - before.iterative), fallbacks "
                                   + "\(after.fallbacks - before.fallbacks) (expected 2 and 0)")
            }
        },
        MultiRankCheck("losses.spectral_tiny_batch_empty_shard") {
            try shareCheck($0, "[{kind: spectral, k: 2, solver: iterative}]", batch: 3, views: 1)
        },
        MultiRankCheck("losses.objective_two_views") {
            try shareCheck($0, "[{kind: kd}, {kind: rkd, input: embedding}, {kind: prg, weight: 0.5}, "
                               + "{kind: vrm}, {kind: spectral}]", batch: 7, views: 2)
        },
        MultiRankCheck("losses.rkd_tiny_batch_empty_shard") { try shareCheck($0, "[{kind: rkd}]", batch: 3, views: 1) },
    ]

    static let dIn = 6, dFeat = 5, dEmb = 4, classes = 4

    static func rows(_ t: Tensor, _ range: Range<Int>) -> Tensor {
        let w = t.count / max(t.shape[0], 1)
        let out = Tensor(uninitializedShape: [range.count] + t.shape.dropFirst())
        if range.count > 0 { out.ptr.update(from: t.ptr + range.lowerBound * w, count: range.count * w) }
        return out
    }

    static func relErr(_ a: [Float], _ b: [Float]) -> Double {
        var d = 0.0, m = 1e-6
        for i in a.indices { d = max(d, abs(Double(a[i]) - Double(b[i]))); m = max(m, abs(Double(b[i]))) }
        return d / m
    }

    /// Runs the objective of `config` one-process and distributed, and compares.
    static func shareCheck(_ comm: Communicator, _ config: String, batch b: Int, views v: Int, step: Int = 0) throws {
        let objective = LossObjective(terms: try KDConfig.lossTerms(yaml: config))
        let n = b * v
        var rng = KDRandom(keys: 23, UInt64(b), UInt64(v))
        let x = Tensor.randn([n, dIn], rng: &rng)
        let params0 = [Tensor.randn([dIn, dFeat], std: 0.5, rng: &rng), Tensor.randn([dIn, dEmb], std: 0.5, rng: &rng),
                       Tensor.randn([dIn, classes], std: 1.5, rng: &rng)]
        let tEmb = Tensor.randn([n, dEmb], rng: &rng), zt = Tensor.randn([n, classes], std: 2, rng: &rng)
        let proxies = Tensor.randn([classes, dEmb], rng: &rng)
        let labels = (0..<b).map { ($0 * 7) % classes }

        func student(_ xs: Tensor, _ ps: [Tensor]) throws -> [Tensor] {
            try ps.map { try matmul(xs, $0) }
        }

        // One process: the whole batch, one shard.
        Tape.reset()
        let xRef = x.copy(); xRef.requiresGrad = true
        let pRef = params0.map { p -> Tensor in let c = p.copy(); c.requiresGrad = true; return c }
        let outRef = try student(xRef, pRef)
        let ref = try objective.evaluate(LossInputs(plan: BatchPlan(globalSamples: b), views: v,
                                                    studentFeatures: outRef[0], studentEmbedding: outRef[1],
                                                    studentLogits: outRef[2], teacherEmbedding: tEmb, teacherLogits: zt,
                                                    proxies: proxies, labels: labels, step: step))
        let refLoss = Double(ref.value.item)
        ref.value.backward()

        // Distributed: this rank's samples, gathered, its share.
        Tape.reset()
        let plan = BatchPlan(globalSamples: b, rank: comm.rank, worldSize: comm.size)
        let shard = plan.share, counts = plan.rowCounts(views: v)
        let myRows = (shard.lowerBound * v)..<(shard.upperBound * v)
        let xl = rows(x, myRows); xl.requiresGrad = true
        let ps = params0.map { p -> Tensor in let c = p.copy(); c.requiresGrad = true; return c }
        let local = try student(xl, ps)
        let gathered = try local.map { try allGatherRows($0, comm: comm, counts: counts) }
        let tEmbG = try allGatherRowsNoGrad(rows(tEmb, myRows), comm: comm, counts: counts)
        let ztG = try allGatherRowsNoGrad(rows(zt, myRows), comm: comm, counts: counts)
        let share = try objective.evaluate(LossInputs(plan: plan, views: v, studentFeatures: gathered[0],
                                                      studentEmbedding: gathered[1], studentLogits: gathered[2],
                                                      teacherEmbedding: tEmbG, teacherLogits: ztG, proxies: proxies,
                                                      labels: labels, step: step, comm: comm))
        share.value.backward()
        let loss = try comm.allReduce(Double(share.value.item), op: .sum)
        var termSums = share.terms.map { $0.value }
        try comm.allReduce(&termSums, op: .sum)
        var paramErr = 0.0
        for (p, r) in zip(ps, pRef) {
            var g = p.grad?.array ?? [Float](repeating: 0, count: p.count)
            try comm.allReduce(&g, op: .sum)
            paramErr = max(paramErr, relErr(g, r.grad?.array ?? [Float](repeating: 0, count: p.count)))
        }
        Tape.reset()

        let lossErr = abs(loss - refLoss) / max(abs(refLoss), 1e-6)
        var termErr = 0.0
        for (t, s) in zip(ref.terms, termSums) { termErr = max(termErr, abs(s - t.value) / max(abs(t.value), 1e-6)) }
        let rowErr = myRows.isEmpty ? 0 : relErr(xl.grad?.array ?? [Float](repeating: 0, count: xl.count),
                                                 rows(xRef.grad!, myRows).array)
        if !myRows.isEmpty && xl.grad == nil {
            throw CheckFailure("rank \(comm.rank): no gradient reached the local rows")
        }
        if lossErr > 1e-5 || termErr > 1e-5 || rowErr > 1e-5 || paramErr > 1e-5 {
            throw CheckFailure("relative errors vs one process: loss \(lossErr) (\(loss) vs \(refLoss)), "
                               + "terms \(termErr), local rows \(rowErr), parameters \(paramErr) (bound 1e-5)")
        }
    }
}
