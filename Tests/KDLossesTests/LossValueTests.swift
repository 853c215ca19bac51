import XCTest
import KDTensor
@testable import KDLosses

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
}
