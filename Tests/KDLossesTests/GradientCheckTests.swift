import XCTest
import KDTensor
@testable import KDLosses

/// Finite-difference checks of every fused loss (float32 central differences, max-norm relative error),
/// on the whole batch and on a partial shard.
final class GradientCheckTests: XCTestCase {
    let bound = 1e-2

    func check(_ name: String, _ inputs: [Tensor], _ f: ([Tensor]) throws -> Tensor) throws {
        let r = try gradientCheck(inputs, eps: 1e-2, f)
        XCTAssertLessThan(r.maxRelativeError, bound, "\(name): \(r)")
    }

    func testKDWithCE() throws {
        let x = LossCase()
        try check("kd", [x.zs]) {
            try kdLoss(student: $0[0], teacher: x.zt, temperature: 3, labels: x.labels, ceWeight: 0.5).value
        }
        try check("kd shard", [x.zs]) {
            try kdLoss(student: $0[0], teacher: x.zt, rows: 2..<5, labels: x.labels, ceWeight: 1).value
        }
        try check("ce", [x.zs]) { try crossEntropyLoss(logits: $0[0], labels: x.labels, rows: 1..<4, count: 7).value }
    }

    func testRKDDistance() throws {
        let x = LossCase()
        try check("rkd_distance", [x.sFeat]) { try rkdDistanceLoss(student: $0[0], teacher: x.tEmb).value }
        try check("rkd_distance shard", [x.sFeat]) {
            try rkdDistanceLoss(student: $0[0], teacher: x.tEmb, rows: 3..<5).value
        }
    }

    func testRKDAngle() throws {
        let x = LossCase()
        try check("rkd_angle", [x.sFeat]) { try rkdAngleLoss(student: $0[0], teacher: x.tEmb).value }
        try check("rkd_angle shard", [x.sFeat]) { try rkdAngleLoss(student: $0[0], teacher: x.tEmb, rows: 0..<3).value }
        try check("rkd_angle sampled", [x.sFeat]) {
            try rkdAngleLoss(student: $0[0], teacher: x.tEmb, rows: 2..<7, sampledAnchors: [5, 0, 3]).value
        }
        try check("rkd_angle sampled partners", [x.sFeat]) {
            try rkdAngleLoss(student: $0[0], teacher: x.tEmb, rows: 1..<6, sampledAnchors: [5, 0, 3, 2],
                             partners: [4, 2, 6]).value
        }
    }

    func testPRG() throws {
        let x = LossCase()
        let p = PRGParameters(temperature: 2, edgeTemperature: 0.5, nodeWeight: 1, edgeWeight: 2,
                              pseudoLabelWeight: 0.5)
        try check("prg", [x.sEmb, x.zs]) {
            try prgLoss(studentEmbedding: $0[0], studentLogits: $0[1], teacherEmbedding: x.tEmb, teacherLogits: x.zt,
                        proxies: x.proxies, parameters: p).value
        }
        try check("prg shard", [x.sEmb, x.zs]) {
            try prgLoss(studentEmbedding: $0[0], studentLogits: $0[1], teacherEmbedding: x.tEmb, teacherLogits: x.zt,
                        proxies: x.proxies, parameters: p, rows: 4..<7).value
        }
    }

    func testVRM() throws {
        let x = LossCase(b: 6, views: 2)
        let p = VRMParameters(pruneFraction: 0.34, temperature: 3, delta: 0.1)
        XCTAssertEqual(vrmPrunedSamples(teacher: x.zt, views: 2, fraction: 0.34).filter { $0 }.count, 2)
        try check("vrm", [x.zs]) { try vrmLoss(student: $0[0], teacher: x.zt, views: 2, parameters: p).value }
        try check("vrm shard", [x.zs]) {
            try vrmLoss(student: $0[0], teacher: x.zt, views: 2, parameters: p, shard: 2..<5).value
        }
        // 11 classes: the edge sweeps' eight-lane body and their scalar tail both run.
        let wide = LossCase(b: 5, views: 2, c: 11)
        try check("vrm 11 classes", [wide.zs]) {
            try vrmLoss(student: $0[0], teacher: wide.zt, views: 2, parameters: p, shard: 1..<4).value
        }
    }

    func testSpectral() throws {
        let x = LossCase()
        try check("spectral", [x.sEmb]) { try spectralLoss(student: $0[0], teacher: x.tEmb, k: 3).value }
    }

    func testObjectiveComposition() throws {
        let x = LossCase(b: 5, views: 2)
        let obj = try LossObjective(config: [
            ["kind": "kd", "ce_weight": 0.5], ["kind": "rkd", "distance_weight": 2, "angle_weight": 3],
            ["kind": "prg", "weight": 0.5], ["kind": "vrm", "q": 0.2], ["kind": "spectral", "k": 2],
        ])
        try check("objective", [x.sFeat, x.sEmb, x.zs]) { _ in try obj.evaluate(x.inputs(rank: 1, of: 3)).value }
    }
}
