import XCTest
import KDCore
import KDTensor
@testable import KDLosses
import KDLossTesting

final class LossConfigTests: XCTestCase {
    func testDescriptorDefaults() throws {
        let rkd = try XCTUnwrap(try makeLossTerm(["kind": "rkd"]) as? RKDTerm)
        XCTAssertEqual(rkd.distanceWeight, 25); XCTAssertEqual(rkd.angleWeight, 50); XCTAssertEqual(rkd.weight, 1)
        XCTAssertFalse(rkd.useEmbedding)
        let prg = try XCTUnwrap(try makeLossTerm(["kind": "prg", "edge_temperature": 0.2]) as? PRGTerm)
        XCTAssertEqual(prg.parameters.temperature, 4); XCTAssertEqual(prg.parameters.edgeTemperature, 0.2)
        XCTAssertEqual(prg.parameters.nodeWeight, 1); XCTAssertEqual(prg.parameters.pseudoLabelWeight, 1)
        let vrm = try XCTUnwrap(try makeLossTerm(["kind": "vrm"]) as? VRMTerm)
        XCTAssertEqual(vrm.parameters, VRMParameters.defaults)
        XCTAssertEqual(vrm.parameters.pruneFraction, 0.1); XCTAssertEqual(vrm.parameters.temperature, 4)
        XCTAssertEqual(vrm.parameters.delta, 1)
        let kd = try XCTUnwrap(try makeLossTerm(["kind": "KD", "temperature": 2]) as? KDTerm)
        XCTAssertEqual(kd.temperature, 2); XCTAssertEqual(kd.ceWeight, 0)
        let sp = try XCTUnwrap(try makeLossTerm(["kind": "spectral", "k": "3"]) as? SpectralTerm)
        XCTAssertEqual(sp.k, 3)
        XCTAssertEqual(sp.solver, .auto)
        let it = try XCTUnwrap(try makeLossTerm(["kind": "spectral", "solver": "iterative"]) as? SpectralTerm)
        XCTAssertEqual(it.solver, .iterative)
        let de = try XCTUnwrap(try makeLossTerm(["kind": "spectral", "solver": "dense"]) as? SpectralTerm)
        XCTAssertEqual(de.solver, .dense)
    }

    /// PRG's `τ_clip` is the teacher's (`teacher.clip_scale`): a `clip_scale` in the loss entry used to be
    /// read and ignored; it is refused, naming its replacement.
    func testPRGClipScaleIsRefusedNamingTheTeacherKey() {
        XCTAssertThrowsError(try makeLossTerm(["kind": "prg", "clip_scale": 50])) { e in
            XCTAssertEqual("\(e)", "loss config: clip_scale is not a key of this loss: use teacher.clip_scale instead")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "prg", "clip_scale": "fifty"])) { e in
            XCTAssertTrue("\(e)".contains("teacher.clip_scale"), "\(e)")
        }
        XCTAssertNoThrow(try makeLossTerm(["kind": "prg"]))
    }

    func testSpectralSolverKeyErrors() {
        XCTAssertThrowsError(try makeLossTerm(["kind": "spectral", "solver": "lanczos"])) { e in
            XCTAssertEqual("\(e)", "loss config: solver: expected one of [\"auto\", \"dense\", \"iterative\"]")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "spectral", "solvr": "dense"])) { e in
            XCTAssertTrue("\(e)".contains("unknown key(s) 'solvr'"), "\(e)")
        }
    }

    func testUnknownKeyAndKindAreErrors() {
        XCTAssertThrowsError(try makeLossTerm(["kind": "rkd", "angle_wieght": 1])) { e in
            XCTAssertTrue("\(e)".contains("unknown key(s) 'angle_wieght'"), "\(e)")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "crd"])) { e in
            XCTAssertTrue("\(e)".contains("unknown loss kind 'crd'"), "\(e)")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "kd", "temperature": "hot"])) { e in
            XCTAssertEqual("\(e)", "loss config: temperature: expected a number, got 'hot'")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "rkd", "input": "logits"])) { e in
            XCTAssertTrue("\(e)".contains("input"), "\(e)")
        }
        // Ranges come from the descriptors: a temperature must be > 0, a prune fraction within [0, 1].
        XCTAssertThrowsError(try makeLossTerm(["kind": "kd", "temperature": 0])) { e in
            XCTAssertTrue("\(e)".contains("temperature"), "\(e)")
        }
        XCTAssertThrowsError(try makeLossTerm(["kind": "vrm", "q": 1.5])) { e in
            XCTAssertTrue("\(e)".contains("q"), "\(e)")
        }
    }

    func testMissingInputsAndShapes() throws {
        let x = LossCase()
        var inp = x.inputs()
        inp.proxies = nil
        XCTAssertThrowsError(try makeLossTerm(["kind": "prg"]).evaluate(inp)) { e in
            XCTAssertEqual("\(e)", "prg: missing input 'proxies'")
        }
        inp = x.inputs(); inp.labels = nil
        XCTAssertThrowsError(try makeLossTerm(["kind": "ce"]).evaluate(inp)) { e in
            XCTAssertEqual("\(e)", "ce: missing input 'labels'")
        }
        inp = LossInputs(plan: BatchPlan(globalSamples: 3), studentLogits: x.zs, teacherLogits: x.zt)
        XCTAssertThrowsError(try makeLossTerm(["kind": "kd"]).evaluate(inp)) { e in
            XCTAssertTrue("\(e)".contains("expected [3, *]"), "\(e)")
        }
        XCTAssertThrowsError(try rkdDistanceLoss(student: x.sFeat, teacher: Tensor.zeros([3, 2]))) { e in
            XCTAssertEqual("\(e)", "rkd_distance (teacher rows): shape mismatch between [3, 2] and [7, 2]")
        }
        XCTAssertThrowsError(try kdLoss(student: x.zs, teacher: x.zt, temperature: 0)) { e in
            XCTAssertEqual("\(e)", "kd: temperature must be > 0, got 0.0")
        }
        XCTAssertThrowsError(try spectralLoss(student: x.sEmb, teacher: x.tEmb, k: 9)) { e in
            XCTAssertEqual("\(e)", "spectral: k = 9 outside 1...7")
        }
        XCTAssertThrowsError(try vrmLoss(student: x.zs, teacher: x.zt, views: 1)) { e in
            XCTAssertTrue("\(e)".contains("views >= 2"), "\(e)")
        }
        Tape.reset()
    }

    func testSpectralDefaultK() throws {
        let x = LossCase(b: 6, c: 4)
        let a = try makeLossTerm(["kind": "spectral"]).evaluate(x.inputs())
        let b = try spectralLoss(student: x.sEmb, teacher: x.tEmb, k: 3)      // min(C = 4, 6/2)
        XCTAssertEqual(a.value.item, b.value.item, accuracy: 1e-6)
        Tape.reset()
    }
}
