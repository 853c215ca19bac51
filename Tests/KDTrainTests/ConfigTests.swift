import XCTest
@testable import KDTrain

final class ConfigTests: XCTestCase {
    func testDefaultsAndValues() throws {
        let c = try KDConfig.parse(yaml: """
        seed: 3
        mode: supervised
        data: {source: synthetic, classes: 5, global_batch: 64, views: 2}
        student: {model: resnet20}
        optim: {lr: 0.1, schedule: step, milestones: [10, 20]}
        train: {steps: 40}
        """, file: "a.yaml")
        XCTAssertEqual(c.seed, 3)
        XCTAssertEqual(c.data.classes, 5)
        XCTAssertEqual(c.data.globalBatch, 64)
        XCTAssertEqual(c.data.views, 2)
        XCTAssertEqual(c.student.model, "resnet20")
        XCTAssertEqual(c.optim.milestones, [10, 20])
        XCTAssertEqual(c.train.steps, 40)
        XCTAssertEqual(c.comm.bucketMB, 4)
    }

    func testUnknownKeyNamesKeyAndFile() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data:\n  global_batchh: 4\n", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: data.global_batchh: unknown key (line 2)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "sed: 1\n", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: sed: unknown key (line 1)")
        }
    }

    func testWrongTypeAndImpossibleValues() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: abc}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("c.yaml: data.global_batch: expected an integer, got 'abc'"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: 0}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("c.yaml: data.global_batch: must be ≥ 1, got 0"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: -8}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".contains("must be ≥ 1, got -8"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "optim: {kind: lbfgs}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".contains("optim.kind: must be one of sgd, adamw, got 'lbfgs'"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "mode: distill\nteacher: {kind: network}\nloss: [{kind: kd}]", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: teacher.checkpoint: a network teacher needs a checkpoint")
        }
    }

    func testMalformedYAML() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: [1,\n", file: "bad.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("bad.yaml: malformed YAML"), "\(e)")
        }
    }

    func testOverrides() throws {
        let c = try KDConfig.parse(yaml: "data: {global_batch: 8}\nloss: [{kind: kd, weight: 1}]",
                                   overrides: ["data.global_batch=32", "train.steps=7", "loss.0.weight=2.5", "comm.overlap=true"])
        XCTAssertEqual(c.data.globalBatch, 32)
        XCTAssertEqual(c.train.steps, 7)
        XCTAssertEqual(c.loss[0].weight, 2.5)
        XCTAssertTrue(c.comm.overlap)
        XCTAssertThrowsError(try KDConfig.parse(yaml: "", overrides: ["data.bogus=1"])) { e in
            XCTAssertTrue("\(e)".contains("data.bogus: unknown key"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "", overrides: ["novalue"])) { e in
            XCTAssertTrue("\(e)".contains("expected key=value"), "\(e)")
        }
    }

    func testResolvedYAMLRoundTrips() throws {
        var c = try KDConfig.parse(yaml: """
        mode: distill
        teacher: {kind: network, checkpoint: "t.safetensors"}
        loss: [{kind: prg, weight: 1, temperature: 4}, {kind: rkd, distance_weight: 25, input: embedding}]
        """, file: "x.yaml")
        let again = try KDConfig.parse(yaml: c.resolvedYAML, file: "x.yaml")
        c.file = again.file
        XCTAssertEqual(again, c)
    }
}
