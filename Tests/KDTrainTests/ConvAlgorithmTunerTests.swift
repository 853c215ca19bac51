import XCTest
import KDModels
import KDTensor
import KDTestSupport
@testable import KDTrain

/// `ConvAlgorithmTuner` (`runtime.conv_algorithm`) on stride-2 layers and old wisdom files.
final class ConvAlgorithmTunerTests: XCTestCase {
    /// The choices for resnet8x4 as a trained student and as an inferring teacher (16×16 images).
    func choices(_ setting: String, timed: Bool = false,
                 wisdom: [ConvAlgorithmChoice] = []) throws -> ([ConvAlgorithmChoice], [String: Conv2d]) {
        let models = try [("student", true, 2), ("teacher", false, 3)].map { name, training, seed in
            (name: name, model: try ModelZoo.make(name: "resnet8x4", classes: 10, inputChannels: 3, imageSize: [16, 16],
                                                  seed: UInt64(seed)) as any Classifier, training: training)
        }
        var out: [ConvAlgorithmChoice] = []
        _ = try InProcessWorld(size: 1).run { comm in
            out = try ConvAlgorithmTuner.configure(setting: setting, models: models, imageShape: [16, 16, 3], batch: 2,
                                                   comm: comm, wisdom: wisdom, timed: timed)
        }
        return (out, ConvAlgorithmTuner.namedConvolutions(models))
    }

    func testStrideTwoLayersGetTheirOwnChoice() throws {
        // resnet8x4's two 3×3 stride-2 convolutions (64→128, 128→256) are shapes of their own. `auto` gives the
        // teacher's F(4×4, 2×2) (its error on their weights within the tolerance, as F(4×4)'s on the stride-1
        // layers) and keeps the student's direct (two filter banks per step cost what the GEMMs save); the 1×1
        // shortcuts are not Winograd layers and stay direct.
        let (auto, convs) = try choices("auto")
        let strided = auto.filter { $0.shape.stride == 2 }
        XCTAssertEqual(strided.map(\.layers), [["student.layer2.0.conv1"], ["student.layer3.0.conv1"],
                                               ["teacher.layer2.0.conv1"], ["teacher.layer3.0.conv1"]])
        XCTAssertEqual(strided.map(\.shape.description), ["16×16×64→128 p1 s2 fwd+bwd",
                                                          "8×8×128→256 p1 s2 fwd+bwd",
                                                          "16×16×64→128 p1 s2 fwd", "8×8×128→256 p1 s2 fwd"])
        XCTAssertEqual(strided.map(\.algorithm), [.direct, .direct, .winograd4, .winograd4])
        for c in strided where !c.shape.training {
            XCTAssertLessThanOrEqual(try XCTUnwrap(c.winograd4Error), ConvAlgorithmTuner.winograd4Tolerance)
        }
        XCTAssertEqual(convs["teacher.layer2.0.conv1"]?.algorithm, .winograd4)
        XCTAssertEqual(convs["student.layer2.0.conv1"]?.algorithm, .direct)
        XCTAssertEqual(convs["teacher.layer2.0.downsample.0"]?.algorithm, .direct)
        XCTAssertTrue(auto.contains { $0.shape.stride == 1 && $0.shape.training && $0.algorithm == .winograd4 })
        // A fixed F(4×4) takes every layer it applies to; a fixed F(2×2) does not apply at stride 2: direct.
        let (f4, f4Convs) = try choices("winograd4")
        XCTAssertTrue(f4.allSatisfy { $0.algorithm == .winograd4 })
        XCTAssertEqual(f4Convs["student.layer3.0.conv1"]?.algorithm, .winograd4)
        let (f2, _) = try choices("winograd2")
        XCTAssertEqual(f2.filter { $0.shape.stride == 2 }.map(\.algorithm), [.direct, .direct, .direct, .direct])
        XCTAssertTrue(f2.filter { $0.shape.stride == 1 }.allSatisfy { $0.algorithm == .winograd2 })
        // `timed` times only what applies: direct and F(4×4, 2×2).
        let (timed, _) = try choices("timed", timed: true)
        for c in timed where c.shape.stride == 2 {
            XCTAssertEqual(Set(c.milliseconds.keys), ["direct", "winograd4"], "\(c.shape)")
        }
    }

    func testRecordingsWithoutStrideTwoChoicesRunThemDirect() throws {
        // A checkpoint's kdgraph.conv_algorithms or a teacher cache written before stride-2 layers had choices
        // lists only the stride-1 layers, and those runs computed the stride-2 ones direct: so do resumed runs
        // and runs reading such a cache, and the cache's manifest still matches.
        let (auto, convs) = try choices("auto")
        let old = auto.filter { $0.shape.stride == 1 }
        XCTAssertEqual(convs["teacher.layer2.0.conv1"]?.algorithm, .winograd4)
        // A repeated run in the same output.dir: the old conv_algorithms.json gives stride-2 shapes direct;
        // wisdom that has stride-2 choices gives its own, and missing ones by the rule.
        let (repeated, repeatedConvs) = try choices("auto", wisdom: old)
        XCTAssertEqual(repeated.filter { $0.shape.stride == 2 }.map(\.algorithm), [.direct, .direct, .direct, .direct])
        XCTAssertTrue(repeated.allSatisfy { $0.source == "reused" })
        XCTAssertEqual(repeatedConvs["teacher.layer2.0.conv1"]?.algorithm, .direct)
        let (newer, _) = try choices("auto", wisdom: Array(auto.prefix(auto.count - 1)))
        XCTAssertEqual(newer.map(\.algorithm), auto.map(\.algorithm))
        XCTAssertEqual(newer.last?.source, "rule")
        // --resume: `apply` with the old recording.
        let layerModels = try [("student", true), ("teacher", false)].map { name, training in
            (name: name, model: try ModelZoo.make(name: "resnet8x4", classes: 10, inputChannels: 3,
                                                  imageSize: [16, 16], seed: 2) as any Classifier, training: training)
        }
        let resumed = ConvAlgorithmTuner.namedConvolutions(layerModels)
        for name in ["teacher.layer2.0.conv1", "teacher.layer3.0.conv1"] { resumed[name]?.algorithm = .winograd4 }
        try ConvAlgorithmTuner.apply(old, models: layerModels)
        for name in ["teacher.layer2.0.conv1", "teacher.layer3.0.conv1", "student.layer2.0.conv1"] {
            XCTAssertEqual(resumed[name]?.algorithm, .direct, name)
        }
        XCTAssertEqual(resumed["teacher.layer1.0.conv2"]?.algorithm, .winograd4)
        // The teacher cache: an old manifest lists no stride-2 layer; adopting it runs them direct, and the
        // manifest this run then expects is the stored one.
        let stored = TeacherOutputCache.teacherAlgorithms(old)
        XCTAssertFalse(stored.contains("layer2.0.conv1"))
        XCTAssertTrue(TeacherOutputCache.teacherAlgorithms(auto).contains("teacher.layer2.0.conv1=winograd4"))
        var adopted = auto
        let teacher = try XCTUnwrap(layerModels.last?.model)
        let teacherConvs = ConvAlgorithmTuner.namedConvolutions([("teacher", teacher, false)])
        teacherConvs["teacher.layer3.0.conv1"]?.algorithm = .winograd4
        try TeacherOutputCache.adopt(stored, into: &adopted, teacher: teacher)
        XCTAssertEqual(TeacherOutputCache.teacherAlgorithms(adopted), stored)
        XCTAssertEqual(teacherConvs["teacher.layer3.0.conv1"]?.algorithm, .direct)
        XCTAssertEqual(adopted.filter { $0.shape.stride == 2 && !$0.shape.training }.map(\.source),
                       ["teacher cache", "teacher cache"])
        // A cache made with the strided teacher lists them, and adopting it keeps them.
        var again = auto
        try TeacherOutputCache.adopt(TeacherOutputCache.teacherAlgorithms(auto), into: &again, teacher: teacher)
        XCTAssertEqual(teacherConvs["teacher.layer3.0.conv1"]?.algorithm, .winograd4)
        XCTAssertEqual(again.map(\.algorithm), auto.map(\.algorithm))
    }

    func testWisdomWithoutStrideReadsAsStrideOne() throws {
        // conv_algorithms.json and checkpoints written before stride-2 layers had choices hold no `stride`.
        let old = #"{"h":8,"w":8,"cin":16,"cout":16,"padding":1,"training":true}"#
        let shape = try JSONDecoder().decode(ConvLayerShape.self, from: Data(old.utf8))
        XCTAssertEqual(shape, ConvLayerShape(h: 8, w: 8, cin: 16, cout: 16, padding: 1, training: true))
        XCTAssertEqual(shape.stride, 1)
        let s2 = ConvLayerShape(h: 8, w: 8, cin: 16, cout: 32, padding: 1, stride: 2, training: false)
        XCTAssertEqual(try JSONDecoder().decode(ConvLayerShape.self, from: JSONEncoder().encode(s2)), s2)
        XCTAssertThrowsError(try JSONDecoder().decode(ConvLayerShape.self, from: Data(#"{"h":8}"#.utf8)))
    }
}
