import Foundation
import XCTest
import KDTensor
@testable import KDLosses
import KDLossTesting

/// The loss contract, checked for every registered loss from the registry alone (`LossContract`:
/// configurations from each descriptor's parameters, unweighted terms, finite differences, shares over
/// 1–4 ranks with and without a communicator, the fixtures), shown able to fail, and the documented
/// defaults checked against the descriptors.
final class LossContractTests: XCTestCase {
    override func tearDown() { LossRegistry.extra = []; Tape.reset() }

    /// The bundled fixture set and the four extra ones (other seeds, odd batches, duplicated rows).
    func fixtureDirectories() throws -> [String] {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path
        return [root] + ["seed1_b17", "seed2_b8_dup", "seed3_b32", "seed4_b13_dup"].map { root + "/" + $0 }
    }

    func testEveryRegisteredLossHoldsTheContract() throws {
        let dirs = try fixtureDirectories()
        for d in LossRegistry.all {
            let report = LossContract.check(d, fixtureDirectories: dirs)
            XCTAssertEqual(report.failures, [], "\(d.kind): \(report)")
            let configurations = LossContract.configurations(d)
            XCTAssertGreaterThanOrEqual(configurations.count, 1 + d.parameters.filter { $0.replacement == nil }.count,
                                        d.kind)
            // Per configuration at least: 2 unweighted + 2 finite-difference checks + 3 layouts × 4 world
            // sizes × 2 (with and without a communicator) share comparisons of the loss; per fixture case 4
            // world sizes of the loss.
            let fixtureCases = d.fixtures.isEmpty ? 0 : dirs.count * d.fixtures.count * 4
            XCTAssertGreaterThanOrEqual(report.checks, configurations.count * (4 + 24) + fixtureCases, d.kind)
            print("\(d.kind): \(report.checks) contract checks over \(configurations.count) configurations")
        }
    }

    /// A test registers a term whose row-sharded share forgets its all-reduce: the contract fails it on
    /// the row-sharded worlds of 2–4 ranks and in loss blocks on 2–3 ranks — and only there: its finite
    /// differences, its shares without a communicator and a world of one rank hold, and the same term
    /// with the all-reduce passes.
    func testTheContractCatchesAShareThatForgetsItsAllReduce() throws {
        LossRegistry.extra = [NormalisedDistanceTerm.descriptor(kind: "forgetful", forgetsAllReduce: true),
                              NormalisedDistanceTerm.descriptor(kind: "faithful", forgetsAllReduce: false)]
        let broken = LossContract.check(try LossRegistry.descriptor("forgetful"))
        XCTAssertFalse(broken.failures.isEmpty, "\(broken)")
        for f in broken.failures {
            XCTAssertTrue((f.contains("row-sharded") || f.contains("exact blocks")) && !f.contains("N=1"), f)
        }
        for ranks in 2...4 {
            XCTAssertTrue(broken.failures.contains { $0.contains("N=\(ranks) row-sharded") }, "N=\(ranks)")
        }
        for ranks in 2...3 {
            XCTAssertTrue(broken.failures.contains { $0.contains("exact blocks N=\(ranks): loss") }, "N=\(ranks)")
        }
        let sound = LossContract.check(try LossRegistry.descriptor("faithful"))
        XCTAssertEqual(sound.failures, [], "\(sound)")
        XCTAssertEqual(sound.checks, broken.checks)
    }

    /// The objective of every registered kind at once (two views, a partial shard): one backward through
    /// the weighted sum, against central differences.
    func testObjectiveOfEveryKindAgainstFiniteDifferences() throws {
        let x = LossCase(b: 5, views: 2)
        let objective = LossObjective(terms: try LossRegistry.all.enumerated().map {
            try makeLossTerm(["kind": $1.kind, "weight": 0.5 + Double($0)])
        })
        let r = try gradientCheck(x.students, eps: LossContract.finiteDifferenceEpsilon) { _ in
            try objective.evaluate(x.inputs(rank: 1, of: 3)).value
        }
        XCTAssertLessThan(r.maxRelativeError, LossContract.finiteDifferenceTolerance, "\(r)")
    }

    /// docs/losses.md's "Parameters and defaults" table lists exactly the descriptors' keys, defaults and
    /// ranges: a default changed in the code (or the docs) alone fails here.
    /// Every kind with parts refuses all of them at 0 (the term would be identically zero) and builds with any
    /// one of them on; a kind without parts declares none that it does not have.
    func testATermWhosePartsAllWeighZeroIsRefused() throws {
        XCTAssertEqual(LossRegistry.all.filter { !$0.parts.isEmpty }.map(\.kind), ["rkd", "prg", "vrm"])
        for d in LossRegistry.all where !d.parts.isEmpty {
            func make(_ values: [String: Double]) throws {
                var entry: [String: Any] = values
                entry["kind"] = d.kind
                _ = try makeLossTerm(entry)
            }
            let zeros = Dictionary(uniqueKeysWithValues: d.parts.map { ($0, 0.0) })
            XCTAssertThrowsError(try make(zeros), d.kind) { error in
                XCTAssertEqual(error as? LossError, .vanishingTerm(kind: d.kind, parts: d.parts))
            }
            for on in d.parts {
                var one = zeros
                one[on] = 0.5
                XCTAssertNoThrow(try make(one), "\(d.kind): \(on) on")
            }
        }
    }

    func testDocumentedDefaultsAreTheDescriptors() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/losses.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let section = try XCTUnwrap(text.components(separatedBy: "\n## Parameters and defaults\n").dropFirst().first)
        var documented: [String] = []
        for line in section.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") { break }
            guard line.hasPrefix("| `") else { continue }
            documented.append(line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                .joined(separator: " | "))
        }
        var code: [String] = []
        for d in LossRegistry.all {
            for p in d.parameters { code.append("`\(d.kind)` | `\(p.key)` | \(Self.documented(p))") }
        }
        XCTAssertEqual(documented, code, "docs/losses.md \"Parameters and defaults\" differs from the descriptors")
        XCTAssertFalse(code.isEmpty)
    }

    /// A parameter as the docs table writes it: `default | range`.
    static func documented(_ p: LossParameter) -> String {
        guard let value = p.defaultValue else { return "refused | use `\(p.replacement ?? "")`" }
        var range = "any"
        switch value {
        case .choice: range = p.allowed.map { "`\($0)`" }.joined(separator: ", ")
        case .integer, .number:
            let show = { (x: Double) -> String in LossParameter.Value.number(x).description }
            if let lo = p.min, let hi = p.max { range = "[\(show(lo)), \(show(hi))]" } else if let lo = p.min {
                range = (p.exclusiveMin ? "> " : "≥ ") + show(lo)
            }
        }
        let def: String
        if case .choice(let s) = value { def = "`\(s)`" } else { def = value.description }
        return "\(def) | \(range)"
    }
}
