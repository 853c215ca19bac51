import Foundation
import KDTensor
import KDFormats

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
    public static let lossTolerance = 1e-4
    public static let gradientTolerance = 1e-3

    public static func run(directory: String) throws -> (report: [String], ok: Bool) {
        let url = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw LossError.invalidArgument(loss: "conformance", message: "cannot read \(url.path): \(error.localizedDescription)")
        }
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let cases = root["cases"] as? [String: Any] else {
            throw LossError.invalidArgument(loss: "conformance", message: "\(url.path): no 'cases' object")
        }
        var report: [String] = [], ok = true
        for name in cases.keys.sorted() {
            guard let c = cases[name] as? [String: Any] else {
                throw LossError.invalidArgument(loss: "conformance", message: "\(url.path): case '\(name)' is not an object")
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

    static let kinds = ["rkd_distance", "rkd_angle", "spectral", "prg", "vrm", "kd"]

    static func kind(of name: String, _ c: [String: Any]) throws -> String {
        if let k = c["kind"] as? String { return k }
        for k in kinds where name == k || name.hasPrefix(k + "_") || name.hasPrefix(k + ".") || name.hasPrefix(k + "-") {
            return k
        }
        throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': unknown loss kind (known: \(kinds))")
    }

    static func runCase(name: String, case c: [String: Any], directory dir: String) throws -> (String, Bool) {
        let kind = try kind(of: name, c)
        let inputs = c["inputs"] as? [String: Any] ?? [:]
        let expected = c["expected"] as? [String: Any] ?? [:]
        let params = c["params"] as? [String: Any] ?? [:]
        var usedParams = Set<String>()
        func param(_ key: String, _ def: Double) -> Double {
            usedParams.insert(key)
            if let v = params[key] as? NSNumber { return v.doubleValue }
            return def
        }
        func load(_ file: Any?, _ what: String) throws -> Tensor {
            guard let f = file as? String else {
                throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': missing '\(what)'")
            }
            let a = try NPYArray(path: URL(fileURLWithPath: dir).appendingPathComponent(f).path)
            return Tensor(shape: a.shape, data: a.floatArray())
        }
        func input(_ key: String) throws -> Tensor { try load(inputs[key], "inputs.\(key)") }

        Tape.reset()
        var results: [(String, Tensor)] = []     // (expected key, computed tensor)
        let loss: Double
        switch kind {
        case "kd":
            let zs = try input("student_logits"), zt = try input("teacher_logits")
            zs.requiresGrad = true
            let r = try kdLoss(student: zs, teacher: zt, temperature: Float(param("temperature", 4)))
            loss = Double(r.value.item); r.value.backward()
            results = [("grad_student_logits", zs.grad ?? Tensor.zeros(zs.shape))]
        case "rkd_distance", "rkd_angle":
            let s = try input("student"), t = try input("teacher")
            s.requiresGrad = true
            let r = kind == "rkd_distance" ? try rkdDistanceLoss(student: s, teacher: t) : try rkdAngleLoss(student: s, teacher: t)
            loss = Double(r.value.item); r.value.backward()
            results = [("grad_student", s.grad ?? Tensor.zeros(s.shape))]
        case "prg":
            let f = try input("teacher_features"), prompts = try input("prompt_embeddings")
            let s = try input("student_embedding"), zs = try input("student_logits")
            let (zt, proxies) = try prgTeacher(features: f, prompts: prompts, clipScale: Float(param("clip_scale", 100)))
            s.requiresGrad = true; zs.requiresGrad = true
            let p = PRGParameters(temperature: Float(param("temperature", 4)), edgeTemperature: Float(param("edge_temperature", 0.1)),
                                  nodeWeight: Float(param("node_weight", 1)), edgeWeight: Float(param("edge_weight", 1)),
                                  pseudoLabelWeight: Float(param("pseudo_label_weight", 1)))
            let r = try prgLoss(studentEmbedding: s, studentLogits: zs, teacherEmbedding: f, teacherLogits: zt,
                                proxies: proxies, parameters: p)
            loss = Double(r.value.item); r.value.backward()
            results = [("teacher_logits", zt), ("proxies", proxies),
                       ("grad_student_embedding", s.grad ?? Tensor.zeros(s.shape)),
                       ("grad_student_logits", zs.grad ?? Tensor.zeros(zs.shape))]
        case "vrm":
            let sr = try input("student_logits_real"), sv = try input("student_logits_virtual")
            let tr = try input("teacher_logits_real"), tv = try input("teacher_logits_virtual")
            let zs = interleave(sr, sv), zt = interleave(tr, tv)
            zs.requiresGrad = true
            let p = VRMParameters(pruneFraction: param("q", 0.1), temperature: Float(param("temperature", 4)),
                                  delta: Float(param("delta", 1)), interSampleWeight: Float(param("inter_sample_weight", 1)),
                                  interClassWeight: Float(param("inter_class_weight", 1)), kdWeight: Float(param("kd_weight", 1)))
            let r = try vrmLoss(student: zs, teacher: zt, views: 2, parameters: p)
            loss = Double(r.value.item); r.value.backward()
            let g = zs.grad ?? Tensor.zeros(zs.shape)
            results = [("grad_student_logits_real", view(g, 0)), ("grad_student_logits_virtual", view(g, 1))]
        case "spectral":
            let s = try input("student"), t = try input("teacher")
            s.requiresGrad = true
            guard params["k"] != nil else {
                throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': spectral needs params.k")
            }
            let r = try spectralLoss(student: s, teacher: t, k: Int(param("k", 1)))
            loss = Double(r.value.item); r.value.backward()
            results = [("grad_student", s.grad ?? Tensor.zeros(s.shape))]
        default:
            throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': unknown kind '\(kind)'")
        }
        Tape.reset()

        guard let want = (expected["loss"] as? NSNumber)?.doubleValue else {
            throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': expected.loss missing")
        }
        var out: [String: Any] = ["case": name, "kind": kind, "loss": loss, "expected_loss": want]
        let lossErr = abs(loss - want) / max(abs(want), 1e-6)
        out["loss_rel_err"] = lossErr
        var ok = lossErr <= lossTolerance
        for (key, got) in results {
            guard let file = expected[key] else { continue }
            let e = try load(file, "expected.\(key)")
            guard e.count == got.count else {
                throw LossError.invalidArgument(loss: "conformance", message: "case '\(name)': \(key) has shape \(e.shape), computed \(got.shape)")
            }
            var maxDiff = 0.0, maxRef = 0.0
            for i in 0..<e.count {
                maxDiff = max(maxDiff, abs(Double(got.ptr[i]) - Double(e.ptr[i])))
                maxRef = max(maxRef, abs(Double(e.ptr[i])))
            }
            let err = maxDiff / max(maxRef, 1e-6)
            out["\(key)_rel_err"] = err
            ok = ok && err <= gradientTolerance
        }
        let ignored = Set(params.keys).subtracting(usedParams).sorted()
        if !ignored.isEmpty { out["ignored_params"] = ignored }
        out["ok"] = ok
        return (json(out), ok)
    }

    /// `[B, C]` real and virtual → `[2B, C]` sample-major.
    static func interleave(_ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.shape[0], c = a.shape[1]
        let z = Tensor(uninitializedShape: [2 * n, c])
        for i in 0..<n {
            (z.ptr + 2 * i * c).update(from: a.ptr + i * c, count: c)
            (z.ptr + (2 * i + 1) * c).update(from: b.ptr + i * c, count: c)
        }
        return z
    }

    /// View `v` of a `[2B, C]` sample-major matrix.
    static func view(_ z: Tensor, _ v: Int) -> Tensor {
        let n = z.shape[0] / 2, c = z.shape[1]
        let out = Tensor(uninitializedShape: [n, c])
        for i in 0..<n { (out.ptr + i * c).update(from: z.ptr + (2 * i + v) * c, count: c) }
        return out
    }

    static func json(_ d: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: d, options: [.sortedKeys]) else { return "\(d)" }
        return String(decoding: data, as: UTF8.self)
    }
}
