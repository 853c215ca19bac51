import Foundation
import KDCore
import KDFormats
import KDTensor

/// Loss conformance against a fixture manifest (format of the project's loss fixtures: `manifest.json`
/// with `cases.<name>.{inputs, params, expected}`, float32 `.npy` inputs, a scalar expected `loss` and
/// float64 `.npy` gradients named `grad_<input>`).
///
/// Each case runs through the real loss code (shard = the whole batch, one rank) with recording on;
/// the report has one JSON line per case with the relative error of the loss
/// (`|got − want| / max(|want|, 1e-6)`) and of each gradient and derived output (max-norm:
/// `max|got − want| / max(max|want|, 1e-6)`). A case fails beyond 1e-4 (loss) or 1e-3 (gradients).
/// The case's kind is its name or the prefix before `_`/`.`/`-` (`kd`, `rkd_distance`, `rkd_angle`,
/// `prg`, `vrm`, `spectral`), or an explicit `"kind"` field.
public enum Conformance {
    /// Float32 kernels against a float64 reference (docs/losses.md "Conformance"): the loss is one
    /// rounded sum (measured ≤ 5.2e-7 relative), a gradient entry a few roundings of O(1) terms
    /// (measured ≤ 1.1e-6 of the largest): bounds a hundred times above, far below a wrong formula.
    public static let lossTolerance = 1e-4
    public static let gradientTolerance = 1e-3

    /// `|got − want| / max(|want|, 1e-6)`: the loss error of a case.
    public static func relativeError(_ got: Double, _ want: Double) -> Double {
        abs(got - want) / max(abs(want), 1e-6)
    }

    /// Max-norm relative error `max|got − want| / max(max|want|, 1e-6)` (arrays of equal length).
    public static func maxNormRelativeError(_ got: UnsafePointer<Float>, _ want: UnsafePointer<Float>,
                                            count: Int) -> Double {
        var maxDiff = 0.0, maxRef = 0.0
        for i in 0..<count {
            maxDiff = max(maxDiff, abs(Double(got[i]) - Double(want[i])))
            maxRef = max(maxRef, abs(Double(want[i])))
        }
        return maxDiff / max(maxRef, 1e-6)
    }

    /// The same of two arrays.
    public static func maxNormRelativeError(_ got: [Float], _ want: [Float]) -> Double {
        precondition(got.count == want.count, "arrays of \(got.count) and \(want.count) elements")
        return got.withUnsafeBufferPointer { g in
            want.withUnsafeBufferPointer { maxNormRelativeError(g.baseAddress!, $0.baseAddress!, count: got.count) }
        }
    }

    public static func run(directory: String) throws -> (report: [String], ok: Bool) {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw LossError.invalidArgument(loss: "conformance",
                                            message: "cannot read \(url.path): \(ioReason(error, path: url.path))")
        }
        func refuse(_ why: String) -> LossError {
            .invalidArgument(loss: "conformance", message: "\(url.path): \(why)")
        }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            throw refuse("not valid JSON (\(detail))")
        }
        guard let root = parsed as? [String: Any] else { throw refuse("not a JSON object (expected {\"cases\": …})") }
        guard let given = root["cases"] else { throw refuse("no 'cases' object") }
        guard let cases = given as? [String: Any] else {
            throw refuse("'cases' is not an object of named cases ({\"name\": {\"inputs\": …}, …})")
        }
        // A manifest without cases would pass while checking nothing.
        guard !cases.isEmpty else { throw refuse("'cases' is empty: nothing to check") }
        var report: [String] = [], ok = true
        for name in cases.keys.sorted() {
            guard let c = cases[name] as? [String: Any] else {
                throw LossError.invalidArgument(loss: "conformance",
                                                message: "\(url.path): case '\(name)' is not an object")
            }
            let line: String, pass: Bool
            do {
                (line, pass) = try runCase(name: name, case: c, directory: directory)
            } catch {
                line = json(["case": name, "ok": false, "error": "\(error)"]); pass = false
            }
            report.append(line)
            ok = ok && pass
        }
        report.append(json(["conformance": directory.split(separator: "/").last.map(String.init) ?? directory,
                            "cases": cases.count, "ok": ok]))
        return (report, ok)
    }

    /// Every fixture kind of the registered losses, longest first (so a case name's prefix picks the
    /// most specific one).
    public static var runners: [(kind: String, run: LossFixtureRunner)] {
        LossRegistry.all.flatMap { $0.fixtures }.sorted { $0.kind.count > $1.kind.count }
    }

    /// The fixture kind of the case `name` (its `"kind"` field, or the longest registered kind its name
    /// starts with).
    public static func kind(of name: String, _ c: [String: Any]) throws -> String {
        if let k = c["kind"] as? String { return k }
        for (k, _) in runners
        where name == k || name.hasPrefix(k + "_") || name.hasPrefix(k + ".") || name.hasPrefix(k + "-") {
            return k
        }
        let known = runners.map { $0.kind }
        throw LossError.invalidArgument(loss: "conformance",
                                        message: "case '\(name)': unknown loss kind (known: \(known))")
    }

    /// A manifest case: its `.npy` inputs (under the manifest's folder) and numeric `params`, evaluated
    /// on one rank (`plan` nil: the whole batch) or as rank `plan.rank` of `comm`.
    public final class FixtureCase: LossFixture {
        public let name: String, directory: String, inputs: [String: Any], params: [String: Any]
        public let rank: Int, worldSize: Int
        public let comm: Communicator?
        public private(set) var used = Set<String>()
        public init(name: String, directory: String, inputs: [String: Any], params: [String: Any],
                    rank: Int = 0, worldSize: Int = 1, comm: Communicator? = nil) {
            self.name = name; self.directory = directory; self.inputs = inputs; self.params = params
            self.rank = rank; self.worldSize = worldSize; self.comm = comm
        }
        public func share(samples: Int) -> Range<Int> {
            BatchPlan(globalSamples: samples, rank: rank, worldSize: worldSize).share
        }
        public func load(_ file: Any?, _ what: String) throws -> Tensor {
            guard let f = file as? String else {
                throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': missing '\(what)'")
            }
            let a = try NPYArray(path: URL(fileURLWithPath: directory).appendingPathComponent(f).path)
            return Tensor(shape: a.shape, data: a.floatArray())
        }
        public func input(_ key: String) throws -> Tensor { try load(inputs[key], "inputs.\(key)") }
        public func parameter(_ key: String, _ def: Double) -> Double {
            used.insert(key)
            return (params[key] as? NSNumber)?.doubleValue ?? def
        }
        public func hasParameter(_ key: String) -> Bool { used.insert(key); return params[key] != nil }
    }

    static func runCase(name: String, case c: [String: Any], directory dir: String) throws -> (String, Bool) {
        let kind = try kind(of: name, c)
        guard let runner = runners.first(where: { $0.kind == kind }) else {
            throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': unknown kind '\(kind)'")
        }
        let expected = c["expected"] as? [String: Any] ?? [:]
        let params = c["params"] as? [String: Any] ?? [:]
        let fixture = FixtureCase(name: name, directory: dir, inputs: c["inputs"] as? [String: Any] ?? [:],
                                  params: params)
        Tape.reset()
        let (loss, results) = try runner.run(fixture)
        Tape.reset()

        guard let want = (expected["loss"] as? NSNumber)?.doubleValue else {
            throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': expected.loss missing")
        }
        var out: [String: Any] = ["case": name, "kind": kind, "loss": loss, "expected_loss": want]
        let lossErr = relativeError(loss, want)
        out["loss_rel_err"] = lossErr
        var ok = lossErr <= lossTolerance
        for (key, got) in results {
            guard let file = expected[key] else { continue }
            let e = try fixture.load(file, "expected.\(key)")
            guard e.count == got.count else {
                throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': \(key) has shape "
                                                + "\(e.shape), computed \(got.shape)")
            }
            let err = maxNormRelativeError(got.ptr, e.ptr, count: e.count)
            out["\(key)_rel_err"] = err
            ok = ok && err <= gradientTolerance
        }
        let ignored = Set(params.keys).subtracting(fixture.used).sorted()
        if !ignored.isEmpty { out["ignored_params"] = ignored }
        out["ok"] = ok
        return (json(out), ok)
    }

    /// One JSON object on one line, keys sorted (the report's format).
    public static func json(_ d: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: d, options: [.sortedKeys]) else { return "\(d)" }
        return String(decoding: data, as: UTF8.self)
    }
}
