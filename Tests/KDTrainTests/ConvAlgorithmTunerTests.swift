import XCTest
import KDModels
import KDTensor
import KDTestSupport
@testable import KDTrain

/// `ConvAlgorithmTuner` (`runtime.conv_algorithm`) on stride-2 layers and old wisdom files.
final class ConvAlgorithmTunerTests: XCTestCase {
    func choices(_ setting: String, timed: Bool = false) throws -> ([ConvAlgorithmChoice], any Classifier) {
        let m = try ModelZoo.make(name: "resnet8x4", classes: 10, inputChannels: 3, imageSize: [16, 16], seed: 2)
        var out: [ConvAlgorithmChoice] = []
        _ = try InProcessWorld(size: 1).run { comm in
            out = try ConvAlgorithmTuner.configure(setting: setting, models: [("student", m, true)],
                                                   imageShape: [16, 16, 3], batch: 2, comm: comm, timed: timed)
        }
        return (out, m)
    }

    func testStrideTwoLayersGetTheirOwnChoice() throws {
        // resnet8x4's two 3×3 stride-2 convolutions (64→128, 128→256) are shapes of their own: `auto` gives
        // them F(4×4, 2×2) (its error on their weights is within the tolerance, as F(4×4)'s on the stride-1
        // layers) and sets the layers; the 1×1 shortcuts are not Winograd layers and stay direct.
        let (auto, m) = try choices("auto")
        let strided = auto.filter { $0.shape.stride == 2 }
        XCTAssertEqual(strided.map(\.layers), [["student.layer2.0.conv1"], ["student.layer3.0.conv1"]])
        XCTAssertEqual(strided.map(\.shape.description), ["16×16×64→128 p1 s2 fwd+bwd", "8×8×128→256 p1 s2 fwd+bwd"])
        for c in strided {
            XCTAssertEqual(c.algorithm, .winograd4, "\(c.shape)")
            XCTAssertLessThanOrEqual(try XCTUnwrap(c.winograd4Error), ConvAlgorithmTuner.winograd4Tolerance)
        }
        let convs = ConvAlgorithmTuner.namedConvolutions([("student", m, true)])
        XCTAssertEqual(convs["student.layer2.0.conv1"]?.algorithm, .winograd4)
        XCTAssertEqual(convs["student.layer2.0.downsample.0"]?.algorithm, .direct)
        XCTAssertTrue(auto.contains { $0.shape.stride == 1 && $0.algorithm == .winograd4 })
        // A fixed F(2×2) does not apply at stride 2: those layers are recorded and run direct.
        let (f2, _) = try choices("winograd2")
        XCTAssertEqual(f2.filter { $0.shape.stride == 2 }.map(\.algorithm), [.direct, .direct])
        XCTAssertTrue(f2.filter { $0.shape.stride == 1 }.allSatisfy { $0.algorithm == .winograd2 })
        // `timed` times only what applies: direct and F(4×4, 2×2).
        let (timed, _) = try choices("timed", timed: true)
        for c in timed where c.shape.stride == 2 {
            XCTAssertEqual(Set(c.milliseconds.keys), ["direct", "winograd4"], "\(c.shape)")
        }
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
