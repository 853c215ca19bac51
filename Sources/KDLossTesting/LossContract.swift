import Foundation
import KDCore
import KDLosses
import KDTensor
import KDTestSupport

/// The loss contract (docs/losses.md "The loss contract"), checked for a registered loss kind from its
/// descriptor alone — no list of kinds, parameters or inputs is kept by hand:
///
/// 1. **Configurations** from the descriptor's parameters: the defaults, then each parameter moved off
///    its default (a number halved — or, out of its range or 0, doubled, then ± 0.5; an integer 2 above
///    its minimum; every other value of a choice). Refused keys must be refused naming their replacement; unknown keys
///    refused.
/// 2. **Unweighted**: a term's `evaluate` does not apply its weight (weight 3 and 1 give the same share),
///    the objective does (`loss/<kind>` = 3 × the share).
/// 3. **Finite differences** of the objective of that one term with respect to every student matrix,
///    on the whole batch and on a partial shard.
/// 4. **Shares** over N = 1–4 ranks, uneven shards and an empty one (3 samples on 4 ranks), without a
///    communicator (each rank evaluates its share of the global matrices) and row-sharded over an
///    in-process world (`LossInputs.comm`): the shares of the loss, of every logged term and of the
///    gradients add up to the whole, which is non-zero with a non-zero gradient on these random
///    inputs. Inputs have two views when the term needs them (`.twoViews`), and every term also sees
///    two views per sample.
/// 5. **Exact blocks** (deterministic training): evaluated in loss blocks over in-process worlds of 1–3
///    ranks, the exact sums of the blocks' loss, logged terms and student gradients are the same bits at
///    every world size, and agree with the ordinary evaluation within the share tolerance.
/// 6. **Fixtures** where the descriptor registers fixture kinds: every case of the given manifests,
///    row-sharded over in-process worlds of 1–4 ranks, adds up to the float64 reference within the
///    conformance tolerances.
public enum LossContract {
    /// One configuration of a kind: a label and its `loss:` entry.
    public struct Configuration {
        public let label: String
        public let entry: [String: Any]
    }

    /// What a check found: how many comparisons it made and the failures (empty when it holds).
    public struct Report: CustomStringConvertible {
        public var checks = 0
        public var failures: [String] = []
        public var description: String {
            "\(checks) checks, \(failures.count) failures" + failures.map { "\n  " + $0 }.joined()
        }
        mutating func expect(_ ok: Bool, _ message: @autoclosure () -> String) {
            checks += 1
            if !ok { failures.append(message()) }
        }
        mutating func record(_ label: String, _ body: (inout Report) throws -> Void) {
            do { try body(&self) } catch {
                checks += 1
                failures.append("\(label): threw \(error)")
            }
        }
    }

    /// A failed multi-rank check (`multiRankShares`).
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    /// Shares add up to 1e-5 relative (of max(1, |whole|) for values; max-norm for gradients): the same
    /// float32 sums regrouped by rank, each loss a sum of n ≤ 64 terms (n·u ≈ 4e-6); a share missing its
    /// all-reduce or its part of a global normaliser is off by O(1).
    public static let shareTolerance = 1e-5
    /// Central differences with ε = 1e-2 in float32: truncation O(ε²·f‴) ≈ 1e-4 of the gradient for
    /// these O(1) inputs, rounding ≈ 6e-8·|L|/ε ≈ 1e-5; 1e-2 (max-norm relative) leaves a wide margin for
    /// both and still fails a gradient missing a term (errors of O(1)).
    public static let finiteDifferenceEpsilon: Float = 1e-2
    public static let finiteDifferenceTolerance = 1e-2
    /// The layouts of the share checks, `(samples, views)`: uneven shards on 2–4 ranks, three samples
    /// (an empty shard on four ranks), and two views per sample.
    static func layouts(_ views: Int) -> [(Int, Int)] {
        views == 2 ? [(7, 2), (3, 2), (5, 2)] : [(7, 1), (3, 1), (5, 2)]
    }

    /// The configurations the contract evaluates for `d` (see the type's comment).
    public static func configurations(_ d: LossDescriptor) -> [Configuration] {
        var out = [Configuration(label: "\(d.kind) defaults", entry: ["kind": d.kind])]
        for p in d.parameters {
            var values: [Any] = []
            switch p.defaultValue {
            case let .number(x)?:
                let inRange = { (y: Double) -> Bool in
                    y != x && (p.max.map { y <= $0 } ?? true)
                        && (p.min.map { p.exclusiveMin ? y > $0 : y >= $0 } ?? true)
                }
                values = [x / 2, 2 * x, x + 0.5, x - 0.5].filter(inRange).prefix(1).map { $0 }
            case let .integer(def)?:
                let v = Int(p.min ?? 0) + 2
                values = [v == def ? v + 1 : v]
            case let .choice(def)?: values = p.allowed.filter { $0 != def }
            case nil: break
            }
            for v in values {
                out.append(Configuration(label: "\(d.kind) \(p.key)=\(v)", entry: ["kind": d.kind, p.key: v]))
            }
        }
        return out
    }

    /// Checks 1–6 for `d`; `fixtureDirectories` are manifest folders (fixture check 6).
    public static func check(_ d: LossDescriptor, fixtureDirectories: [String] = []) -> Report {
        var report = Report()
        checkKeys(d, &report)
        for c in configurations(d) {
            report.record(c.label) { r in
                let term = try makeLossTerm(c.entry)
                let views = term.needs.contains(.twoViews) ? 2 : 1
                try checkUnweighted(c, views: views, &r)
                try checkFiniteDifferences(term, c.label, views: views, &r)
                try checkShares(term, c.label, views: views, &r)
                try checkExactBlocks(term, c.label, views: views, &r)
            }
        }
        for dir in fixtureDirectories { report.record("\(d.kind) fixtures \(dir)") { try checkFixtures(d, dir, &$0) } }
        return report
    }

    /// Refused keys are errors naming their replacement, unknown keys errors naming the key.
    static func checkKeys(_ d: LossDescriptor, _ r: inout Report) {
        for p in d.parameters {
            guard let replacement = p.replacement else { continue }
            do {
                _ = try makeLossTerm(["kind": d.kind, p.key: 1.0])
                r.expect(false, "\(d.kind): refused key '\(p.key)' was accepted")
            } catch {
                r.expect("\(error)".contains(p.key) && "\(error)".contains(replacement),
                         "\(d.kind): refusing '\(p.key)' does not name it and '\(replacement)': \(error)")
            }
        }
        do {
            _ = try makeLossTerm(["kind": d.kind, "no_such_key": 1.0])
            r.expect(false, "\(d.kind): unknown key 'no_such_key' was accepted")
        } catch {
            r.expect("\(error)".contains("no_such_key"), "\(d.kind): unknown key error does not name it: \(error)")
        }
    }

    /// One evaluation: the share, its logged terms and the gradients of the student matrices.
    struct Evaluation {
        var value: Double
        var terms: [(name: String, value: Double)]
        var grads: [[Float]]
    }

    /// The objective of `term` alone on rank `rank` of `ranks` (with `comm` when given).
    static func evaluate(_ term: any LossTerm, _ x: LossCase, rank: Int = 0, of ranks: Int = 1,
                         comm: Communicator? = nil) throws -> Evaluation {
        Tape.reset()
        defer { Tape.reset() }
        for s in x.students { s.requiresGrad = true; s.grad = nil }
        let r = try LossObjective(terms: [term]).evaluate(x.inputs(rank: rank, of: ranks, comm: comm))
        if r.value.requiresGrad { r.value.backward() }
        let grads = x.students.map { $0.grad?.array ?? [Float](repeating: 0, count: $0.count) }
        for s in x.students { s.grad = nil; s.requiresGrad = false }
        return Evaluation(value: Double(r.value.item), terms: r.terms, grads: grads)
    }

    /// Weight 3 leaves the term's share unchanged and triples the objective's `loss/<kind>`.
    static func checkUnweighted(_ c: Configuration, views: Int, _ r: inout Report) throws {
        var heavy = c.entry
        heavy["weight"] = 3.0
        let one = try makeLossTerm(c.entry), three = try makeLossTerm(heavy)
        let x = LossCase(b: 7, views: views, seed: 5)
        let a = try withNoGrad { try one.evaluate(x.inputs()).value.item }
        let b = try withNoGrad { try three.evaluate(x.inputs()).value.item }
        r.expect(a == b, "\(c.label): the term applies its own weight (weight 1: \(a), weight 3: \(b))")
        let logged = try withNoGrad { try LossObjective(terms: [three]).evaluate(x.inputs()).terms }
        let named = logged.first { $0.name == "loss/\(c.entry["kind"]!)" }?.value ?? .nan
        // 3·a in float32 then widened: exact to one rounding of the product.
        r.expect(abs(named - 3 * Double(a)) <= 1e-6 * abs(3 * Double(a)),
                 "\(c.label): loss/<kind> with weight 3 is \(named), expected 3 × \(a)")
    }

    /// Central differences against the backward, whole batch and rank 1 of 3.
    static func checkFiniteDifferences(_ term: any LossTerm, _ label: String, views: Int,
                                       _ r: inout Report) throws {
        let x = LossCase(b: 7, views: views, seed: 1)
        for (rank, ranks) in [(0, 1), (1, 3)] {
            let g = try gradientCheck(x.students, eps: finiteDifferenceEpsilon) { _ in
                try LossObjective(terms: [term]).evaluate(x.inputs(rank: rank, of: ranks)).value
            }
            r.expect(g.maxRelativeError < finiteDifferenceTolerance,
                     "\(label): finite differences, rank \(rank) of \(ranks): \(g)")
        }
        for s in x.students { s.requiresGrad = false }
        Tape.reset()
    }

    /// Shares over 1–4 ranks, without and with a communicator, add up to the whole.
    static func checkShares(_ term: any LossTerm, _ label: String, views: Int, _ r: inout Report) throws {
        for (b, v) in layouts(views) {
            let whole = try evaluate(term, LossCase(b: b, views: v, seed: 11))
            // Random inputs: a loss that is 0 or has no gradient would pass every sum below vacuously.
            r.expect(whole.value.isFinite && whole.value != 0, "\(label) b \(b) views \(v): loss \(whole.value)")
            r.expect(whole.grads.contains { $0.contains { $0 != 0 } }, "\(label) b \(b) views \(v): no gradient")
            for ranks in 1...4 {
                let parts = try (0..<ranks).map {
                    try evaluate(term, LossCase(b: b, views: v, seed: 11), rank: $0, of: ranks)
                }
                compare(parts, whole, "\(label) b \(b) views \(v) N=\(ranks)", &r)
                let world = try InProcessWorld(size: ranks).run { comm in
                    try evaluate(term, LossCase(b: b, views: v, seed: 11), rank: comm.rank, of: comm.size, comm: comm)
                }
                compare(world, whole, "\(label) b \(b) views \(v) N=\(ranks) row-sharded", &r)
            }
        }
    }

    /// Deterministic training's evaluation (`LossInputs.exact`): 6 samples in loss blocks of 2 over 1–3
    /// in-process ranks (uneven: 1 + 2 blocks on 2 ranks). On each rank the student matrices keep their
    /// blocks' gradients apart (`Tensor.lossBlocks`); the blocks' values and gradients are added exactly
    /// over the ranks (`ExactSum`), as the trainer does. Every world size gives the same bits; the result
    /// agrees with the ordinary whole-batch evaluation within `shareTolerance`.
    static func checkExactBlocks(_ term: any LossTerm, _ label: String, views: Int, _ r: inout Report) throws {
        let b = 6, blockSize = 2, blocks = b / blockSize
        let whole = try evaluate(term, LossCase(b: b, views: views, seed: 13))
        var first: Evaluation?
        for ranks in 1...3 {
            let world = try InProcessWorld(size: ranks).run { comm -> Evaluation in
                Tape.reset()
                defer { Tape.reset() }
                let x = LossCase(b: b, views: views, seed: 13)
                let inputs = x.inputs(rank: comm.rank, of: comm.size, comm: comm, blockSize: blockSize, exact: true)
                for s in x.students { s.requiresGrad = true; s.lossBlocks = inputs.lossBlocks.count }
                let share = try LossObjective(terms: [term]).evaluate(inputs)
                share.value.backward()
                let values = try ExactSum.sums(share.blockValues, count: 1 + share.terms.count, globalBlocks: blocks,
                                               comm: comm)
                let grads = try x.students.map { s -> [Float] in
                    let partials = s.lossBlockGrad?.allRows() ?? Tensor.zeros([1, s.count])
                    var out = [Float](repeating: 0, count: s.count)
                    let rowSize = s.count / s.shape[0]
                    try out.withUnsafeMutableBufferPointer { o in
                        let groups = (0..<s.shape[0]).map { i in
                            ExactSum.Group(partials: UnsafePointer(partials.ptr + i * rowSize),
                                           blocks: partials.shape[0], count: rowSize, blockStride: s.count,
                                           result: o.baseAddress! + i * rowSize)
                        }
                        try ExactSum.reduce(groups, globalBlocks: blocks, comm: comm)
                    }
                    return out
                }
                let terms = zip(share.terms.map(\.name), values.dropFirst()).map { (name: $0, value: $1) }
                return Evaluation(value: values[0], terms: terms, grads: grads)
            }[0]
            let tag = "\(label) views \(views) exact blocks N=\(ranks)"
            guard let reference = first else {
                first = world
                compare([world], whole, tag + " vs the ordinary evaluation", &r)
                continue
            }
            r.expect(world.value.bitPattern == reference.value.bitPattern,
                     "\(tag): loss \(world.value), one rank's \(reference.value) (not the same bits)")
            r.expect(zip(world.terms, reference.terms).allSatisfy { $0.value.bitPattern == $1.value.bitPattern },
                     "\(tag): logged terms \(world.terms) differ from one rank's \(reference.terms)")
            for k in world.grads.indices {
                r.expect(world.grads[k].map { $0.bitPattern } == reference.grads[k].map { $0.bitPattern },
                         "\(tag): gradient of student input \(k) differs from one rank's (max-norm relative "
                             + "\(relativeError(world.grads[k], reference.grads[k])))")
            }
        }
    }

    /// The shares `parts` add up to `whole`: loss, every logged term, every gradient.
    static func compare(_ parts: [Evaluation], _ whole: Evaluation, _ label: String, _ r: inout Report) {
        let sum = parts.reduce(0) { $0 + $1.value }
        r.expect(abs(sum - whole.value) <= shareTolerance * max(1, abs(whole.value)),
                 "\(label): Σ shares \(sum), whole loss \(whole.value)")
        for (i, t) in whole.terms.enumerated() {
            let s = parts.reduce(0) { $0 + ($1.terms.count == whole.terms.count ? $1.terms[i].value : .nan) }
            r.expect(abs(s - t.value) <= shareTolerance * max(1, abs(t.value)),
                     "\(label): Σ shares of \(t.name) \(s), whole \(t.value)")
        }
        for k in whole.grads.indices where whole.grads[k].contains(where: { $0 != 0 }) {
            var g = [Float](repeating: 0, count: whole.grads[k].count)
            for p in parts { for i in g.indices { g[i] += p.grads[k][i] } }
            let e = relativeError(g, whole.grads[k])
            r.expect(e <= shareTolerance, "\(label): Σ share gradients of student input \(k) off by \(e) (max-norm)")
        }
    }

    /// A fixture case that a descriptor answers: its runner, arrays and expectations.
    struct FixtureSubject {
        let name: String, directory: String, inputs: [String: Any], params: [String: Any]
        let expected: [String: Any], loss: Double
        let runner: LossFixtureRunner

        /// Rank `comm.rank`'s share: the loss share and the computed arrays.
        func share(_ comm: Communicator) throws -> (loss: Double, outputs: [(String, [Float])]) {
            let f = Conformance.FixtureCase(name: name, directory: directory, inputs: inputs, params: params,
                                            rank: comm.rank, worldSize: comm.size, comm: comm)
            Tape.reset()
            defer { Tape.reset() }
            let (loss, outputs) = try runner(f)
            return (loss, outputs.map { ($0.0, $0.1.array) })
        }

        /// The summed shares against the reference, within the conformance tolerances.
        func compare(loss: Double, outputs: [(String, [Float])], _ label: String, _ r: inout Report) throws {
            r.expect(Conformance.relativeError(loss, self.loss) <= Conformance.lossTolerance,
                     "\(label): Σ shares \(loss), reference \(self.loss)")
            let reference = Conformance.FixtureCase(name: name, directory: directory, inputs: inputs, params: params)
            for (key, got) in outputs {
                guard let file = expected[key] else { continue }
                let e = try reference.load(file, "expected.\(key)").array
                let ok = got.count == e.count
                    && Conformance.maxNormRelativeError(got, e) <= Conformance.gradientTolerance
                r.expect(ok, "\(label): \(key) off the reference")
            }
        }
    }

    /// The cases of the manifest in `dir` that `d` answers (by their fixture kind).
    static func fixtureSubjects(_ d: LossDescriptor, _ dir: String) throws -> [FixtureSubject] {
        let url = URL(fileURLWithPath: dir).appendingPathComponent("manifest.json")
        let root = try JSONSerialization.jsonObject(with: try Data(contentsOf: url)) as? [String: Any]
        guard let cases = root?["cases"] as? [String: Any] else { throw Failure("\(url.path): no 'cases' object") }
        return try cases.keys.sorted().compactMap { name in
            guard let c = cases[name] as? [String: Any],
                  let runner = d.fixtures.first(where: { $0.kind == (try? Conformance.kind(of: name, c)) })?.run else {
                return nil
            }
            let expected = c["expected"] as? [String: Any] ?? [:]
            guard let want = (expected["loss"] as? NSNumber)?.doubleValue else { throw Failure("\(name): no loss") }
            return FixtureSubject(name: name, directory: dir, inputs: c["inputs"] as? [String: Any] ?? [:],
                                  params: c["params"] as? [String: Any] ?? [:], expected: expected, loss: want,
                                  runner: runner)
        }
    }

    /// Every case of the manifest in `dir` that `d` answers, row-sharded over 1–4 in-process ranks (the
    /// communicator passed to the kernels): the shares add up to the reference within the conformance
    /// tolerances; `grad_*` arrays are summed over the ranks, any other array compared as rank 0 has it.
    static func checkFixtures(_ d: LossDescriptor, _ dir: String, _ r: inout Report) throws {
        for subject in try fixtureSubjects(d, dir) {
            for ranks in 1...4 {
                let results = try InProcessWorld(size: ranks).run { try subject.share($0) }
                var outputs = results[0].outputs
                for i in outputs.indices where outputs[i].0.hasPrefix("grad_") {
                    for res in results.dropFirst() {
                        for j in outputs[i].1.indices { outputs[i].1[j] += res.outputs[i].1[j] }
                    }
                }
                try subject.compare(loss: results.reduce(0) { $0 + $1.loss }, outputs: outputs,
                                    "fixture \(dir.split(separator: "/").last ?? "") \(subject.name) N=\(ranks)", &r)
            }
        }
    }

    /// The fixture check on a real communicator (`kdgraph-mpi-checks`): every case of the manifests in
    /// `directories` that `d` answers, each rank its share, the loss and the `grad_*` arrays all-reduced
    /// (SUM), against the reference. Every rank of `comm` must call it; it throws on any failure.
    public static func multiRankFixtures(_ comm: Communicator, _ d: LossDescriptor, directories: [String]) throws {
        var r = Report()
        for dir in directories {
            for subject in try fixtureSubjects(d, dir) {
                var (loss, outputs) = try subject.share(comm)
                loss = try comm.allReduce(loss, op: .sum)
                for i in outputs.indices where outputs[i].0.hasPrefix("grad_") {
                    try comm.allReduce(&outputs[i].1, op: .sum)
                }
                try subject.compare(loss: loss, outputs: outputs, "\(dir) \(subject.name)", &r)
            }
        }
        guard r.checks > 0 else { throw Failure("no fixture case of \(d.kind) in \(directories)") }
        if !r.failures.isEmpty { throw Failure(r.failures.joined(separator: "; ")) }
    }
}
