import XCTest
import KDTensor
@testable import KDLosses
import KDLossTesting

/// Values checked against closed forms and degenerate inputs.
final class LossValueTests: XCTestCase {
    override func tearDown() { Tape.reset() }

    /// Student = teacher: every relational loss is 0 (spectral: its baseline cancels) and KD is 0.
    func testIdenticalStudentAndTeacherGiveZero() throws {
        let x = LossCase()
        XCTAssertEqual(try kdLoss(student: x.zt, teacher: x.zt).value.item, 0, accuracy: 1e-6)
        XCTAssertEqual(try rkdDistanceLoss(student: x.tEmb, teacher: x.tEmb).value.item, 0, accuracy: 1e-9)
        XCTAssertEqual(try rkdAngleLoss(student: x.tEmb, teacher: x.tEmb).value.item, 0, accuracy: 1e-9)
        XCTAssertEqual(try spectralLoss(student: x.tEmb, teacher: x.tEmb, k: 3).value.item, 0, accuracy: 1e-5)
        let y = LossCase(b: 6, views: 2)
        let v = try vrmLoss(student: y.zt, teacher: y.zt, views: 2)
        XCTAssertEqual(v.value.item, 0, accuracy: 1e-6)
        // Scaling the student leaves RKD (normalised by μ) and the angles unchanged.
        let scaled = Tensor(shape: x.tEmb.shape, data: x.tEmb.array.map { $0 * 3 })
        XCTAssertEqual(try rkdDistanceLoss(student: scaled, teacher: x.tEmb).value.item, 0, accuracy: 1e-6)
        XCTAssertEqual(try rkdAngleLoss(student: scaled, teacher: x.tEmb).value.item, 0, accuracy: 1e-6)
    }

    /// KD on one row by hand: T² KL(σ(zt/T) ‖ σ(zs/T)).
    func testKDByHand() throws {
        let zs = Tensor(shape: [1, 2], data: [0, 1]), zt = Tensor(shape: [1, 2], data: [1, 0])
        let p = [exp(0.5) / (exp(0.5) + 1), 1 / (exp(0.5) + 1)]   // σ(zt/2)
        let q = [p[1], p[0]]                                      // σ(zs/2)
        let want = 4 * (p[0] * log(p[0] / q[0]) + p[1] * log(p[1] / q[1]))
        XCTAssertEqual(Double(try kdLoss(student: zs, teacher: zt, temperature: 2).value.item), want, accuracy: 1e-6)
    }

    /// Duplicated rows (the same image twice): clamped distances and zero-norm differences stay finite.
    func testDuplicatedRowsStayFinite() throws {
        let x = LossCase()
        for t in [x.sFeat, x.tEmb, x.sEmb, x.zs, x.zt] {
            let c = t.shape[1]
            for j in 0..<c { t.ptr[c + j] = t.ptr[j] }
        }
        x.sFeat.requiresGrad = true
        let losses: [(Tensor, Tensor) throws -> LossShare] = [
            { try rkdDistanceLoss(student: $0, teacher: $1) }, { try rkdAngleLoss(student: $0, teacher: $1) },
        ]
        for f in losses {
            let r = try f(x.sFeat, x.tEmb)
            r.value.backward()
            XCTAssertTrue(r.value.item.isFinite)
            XCTAssertTrue(x.sFeat.grad!.array.allSatisfy { $0.isFinite })
            x.sFeat.grad = nil
        }
        x.sEmb.requiresGrad = true
        let s = try spectralLoss(student: x.sEmb, teacher: x.tEmb, k: 2)
        s.value.backward()
        XCTAssertTrue(x.sEmb.grad!.array.allSatisfy { $0.isFinite })
    }

    /// VRM pruning: ⌊q·B⌋ largest JS divergences, ties to the lower index.
    func testVRMPruningTies() {
        // Samples 1 and 2 have identical (largest) divergences, sample 0 none.
        let zt = Tensor(shape: [6, 2], data: [0, 0, 0, 0,   3, 0, 0, 3,   3, 0, 0, 3])
        XCTAssertEqual(vrmPrunedSamples(teacher: zt, views: 2, fraction: 0.34), [false, true, false])
        XCTAssertEqual(vrmPrunedSamples(teacher: zt, views: 2, fraction: 0.7), [false, true, true])
        XCTAssertEqual(vrmPrunedSamples(teacher: zt, views: 2, fraction: 0), [false, false, false])
    }

    /// PRG teacher with K = 1: logits are τ·cosines and proxies the normalised rows.
    func testPRGTeacherSinglePrompt() throws {
        let f = Tensor(shape: [1, 2], data: [3, 4]), p = Tensor(shape: [2, 2], data: [1, 0, 0, 2])
        let (z, prox) = try prgTeacher(features: f, prompts: p, clipScale: 10)
        XCTAssertEqual(z.array[0], 6, accuracy: 1e-5); XCTAssertEqual(z.array[1], 8, accuracy: 1e-5)
        XCTAssertEqual(prox.array, [1, 0, 0, 1])
        XCTAssertThrowsError(try prgTeacher(features: f, prompts: Tensor.zeros([2, 3]))) { e in
            XCTAssertTrue("\(e)".contains("shape mismatch"), "\(e)")
        }
    }

    /// Capped angle: all anchors sampled = the exact loss; a sample is the scaled sum over its anchors,
    /// identical for equal (seed, step) and different for another step.
    func testAngleAnchorSampling() throws {
        let x = LossCase(b: 9)
        let exact = Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb).value.item)
        let all = rkdAngleAnchorSample(rows: 9, count: 9, seed: 1, step: 4)
        XCTAssertEqual(Set(all), Set(0..<9))
        XCTAssertEqual(Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, sampledAnchors: all).value.item),
                       exact, accuracy: 1e-6 * exact)
        let s = rkdAngleAnchorSample(rows: 9, count: 3, seed: 1, step: 4)
        XCTAssertEqual(s, rkdAngleAnchorSample(rows: 9, count: 3, seed: 1, step: 4))
        XCTAssertNotEqual(s, rkdAngleAnchorSample(rows: 9, count: 3, seed: 1, step: 5))
        var manual = 0.0
        for i in s {
            manual += Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, rows: i..<(i + 1)).value.item)
        }
        XCTAssertEqual(Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, sampledAnchors: s).value.item),
                       3 * manual, accuracy: 1e-6 * manual)
        XCTAssertThrowsError(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, sampledAnchors: [1, 1])) { e in
            XCTAssertTrue("\(e)".contains("distinct rows"), "\(e)")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "rkd", "angle_anchors": 0])) { e in
            XCTAssertEqual("\(e)", "loss config: angle_anchors: expected an integer ≥ 1, got 0")
        }
    }

    /// Sampled partners are unbiased: averaged over every partner set of size P (all C(n, P) of them) the
    /// estimate, and its gradient, equal the exact loss and gradient — for P = 2 (diagonal and off-diagonal
    /// factors far apart) and P = 4, with the anchors a shard that overlaps and misses the sets, and a
    /// student with a duplicated row (its diagonal triplets `j = k` are then non-zero: the `n/P` factor
    /// counts; with the off-diagonal factor instead the P = 2 mean is off by 20%). The tolerance 1e-5: the
    /// same Float64 sums in another order, rounded to float32 once per set.
    func testAnglePartnerSamplingIsUnbiased() throws {
        let x = LossCase(b: 6)
        let n = 6, d = x.sFeat.shape[1]
        let duplicated = Tensor(shape: x.sFeat.shape, data: x.sFeat.array)
        for c in 0..<d { duplicated.ptr[4 * d + c] = duplicated.ptr[1 * d + c] }
        for (s, rows) in [(x.sFeat, 0..<6), (x.sFeat, 1..<4), (duplicated, 0..<6)] {
            s.requiresGrad = true
            Tape.reset(); s.grad = nil
            let exact = try rkdAngleLoss(student: s, teacher: x.tEmb, rows: rows)
            exact.value.backward()
            let exactGrad = s.grad!.array
            for p in [2, 4] {
                var sets: [[Int]] = [[]]
                for i in 0..<n { sets += sets.filter { $0.count < p }.map { $0 + [i] } }
                sets = sets.filter { $0.count == p }
                var mean = 0.0, meanGrad = [Double](repeating: 0, count: n * d)
                for set in sets {
                    Tape.reset(); s.grad = nil
                    let r = try rkdAngleLoss(student: s, teacher: x.tEmb, rows: rows, partners: set.reversed())
                    r.value.backward()
                    mean += Double(r.value.item) / Double(sets.count)
                    for k in 0..<(n * d) { meanGrad[k] += Double(s.grad!.array[k]) / Double(sets.count) }
                }
                let label = "rows \(rows) P = \(p) (\(sets.count) sets)"
                XCTAssertEqual(mean, Double(exact.value.item), accuracy: 1e-5 * Double(exact.value.item), label)
                // At coincident points the gradient runs through n(v) at ‖v‖ < 1e-12 (factors of 1e12):
                // values only.
                if s !== duplicated {
                    XCTAssertLessThan(relativeError(meanGrad.map { Float($0) }, exactGrad), 1e-5, label)
                }
            }
            s.requiresGrad = false
        }
        // One set alone is an estimate, not the loss; the sample is deterministic per (seed, step).
        let set = rkdAnglePartnerSample(rows: 6, count: 3, seed: 2, step: 5)
        XCTAssertEqual(set, rkdAnglePartnerSample(rows: 6, count: 3, seed: 2, step: 5))
        XCTAssertNotEqual(set, rkdAngleAnchorSample(rows: 6, count: 3, seed: 2, step: 5))
        XCTAssertEqual(Set(set).count, 3)
        XCTAssertThrowsError(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, partners: [3])) { e in
            XCTAssertTrue("\(e)".contains("sampled partners must be at least 2 distinct rows"), "\(e)")
        }
    }

    /// The RKD term samples partners only when the batch has more rows than `angle_partners`; its shares
    /// over the rows add up to the whole sampled loss (the same set on every shard).
    func testAnglePartnersInTheTerm() throws {
        let x = LossCase(b: 9)
        let capped = try XCTUnwrap(try makeLossTerm(["kind": "rkd", "angle_partners": 4, "seed": 3]) as? RKDTerm)
        XCTAssertEqual(capped.anglePartners, 4)
        XCTAssertEqual(try XCTUnwrap(try makeLossTerm(["kind": "rkd"]) as? RKDTerm).anglePartners, 256)
        XCTAssertNil(try XCTUnwrap(try makeLossTerm(["kind": "rkd", "angle_partners": 0]) as? RKDTerm).anglePartners)
        XCTAssertThrowsError(try makeLossTerm(["kind": "rkd", "angle_partners": 1])) { e in
            XCTAssertEqual("\(e)", "loss config: angle_partners: expected 0 (every row) or an integer ≥ 2, got 1")
        }
        let whole = try capped.evaluate(x.inputs()).value.item
        let partners = rkdAnglePartnerSample(rows: 9, count: 4, seed: 3, step: 0)
        let angle = try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, partners: partners).value.item
        let distance = try rkdDistanceLoss(student: x.sFeat, teacher: x.tEmb).value.item
        XCTAssertEqual(whole, 25 * distance + 50 * angle, accuracy: 1e-5 * whole)
        let exact = try makeLossTerm(["kind": "rkd"]).evaluate(x.inputs()).value.item
        XCTAssertNotEqual(whole, exact, "4 partners of 9 rows is a sample, not the exact loss")
        var parts: Float = 0
        for r in [0..<2, 2..<2, 2..<9] {
            parts += try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, rows: r, partners: partners).value.item
        }
        XCTAssertEqual(parts, angle, accuracy: 1e-5 * angle)
    }

    /// The angle loss gives the same value anchor block by anchor block as in one sweep.
    func testAngleSplitsExactlyByAnchors() throws {
        let x = LossCase(b: 9)
        let whole = Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb).value.item)
        var parts = 0.0
        for r in [0..<2, 2..<5, 5..<9] {
            parts += Double(try rkdAngleLoss(student: x.sFeat, teacher: x.tEmb, rows: r).value.item)
        }
        XCTAssertEqual(parts, whole, accuracy: 1e-6 * whole)
    }

    /// VRM with 11 classes: the edge sweeps' eight-lane body and their scalar tail both run (the contract
    /// check's inputs have 4 classes), on a partial shard; ⌊0.34·6⌋ = 2 pruned virtual vertices.
    func testVRMFiniteDifferencesOverElevenClasses() throws {
        var p = VRMParameters.defaults
        p.pruneFraction = 0.34; p.temperature = 3; p.delta = 0.1
        let x = LossCase(b: 6, views: 2)
        XCTAssertEqual(vrmPrunedSamples(teacher: x.zt, views: 2, fraction: 0.34).filter { $0 }.count, 2)
        let wide = LossCase(b: 5, views: 2, c: 11)
        // The contract's finite-difference settings and bound (`LossContract`, justified there).
        let r = try gradientCheck([wide.zs], eps: LossContract.finiteDifferenceEpsilon) {
            try vrmLoss(student: $0[0], teacher: wide.zt, views: 2, parameters: p, shard: 1..<4).value
        }
        XCTAssertLessThan(r.maxRelativeError, LossContract.finiteDifferenceTolerance, "\(r)")
    }
}
