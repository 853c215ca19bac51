import Foundation
import KDComm
import KDCore
import KDModels
import KDTensor

/// A distinct 3×3 layer shape that a Winograd algorithm applies to (per-image input `h×w×cin` → `cout`, stride
/// 1, or stride 2 with padding 1: `ConvAlgorithm`), and whether it trains (student: timed forward + backward)
/// or only infers (teacher: timed forward).
public struct ConvLayerShape: Hashable, Codable, Sendable, CustomStringConvertible {
    public var h, w, cin, cout, padding: Int
    /// 1, or 2 (F(4×4, 2×2) over the input's phases, or direct). Files written before stride-2 layers had
    /// choices hold no `stride`: read as 1, which is what they described.
    public var stride: Int = 1
    public var training: Bool
    public var description: String {
        "\(h)×\(w)×\(cin)→\(cout) p\(padding)\(stride == 1 ? "" : " s\(stride)")\(training ? " fwd+bwd" : " fwd")"
    }

    public init(h: Int, w: Int, cin: Int, cout: Int, padding: Int, stride: Int = 1, training: Bool) {
        self.h = h; self.w = w; self.cin = cin; self.cout = cout; self.padding = padding; self.stride = stride
        self.training = training
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        h = try c.decode(Int.self, forKey: .h); w = try c.decode(Int.self, forKey: .w)
        cin = try c.decode(Int.self, forKey: .cin); cout = try c.decode(Int.self, forKey: .cout)
        padding = try c.decode(Int.self, forKey: .padding)
        stride = try c.decodeIfPresent(Int.self, forKey: .stride) ?? 1
        training = try c.decode(Bool.self, forKey: .training)
    }
}

/// The algorithm chosen for one layer shape, with the measurements behind it (`conv_algorithms.json`).
public struct ConvAlgorithmChoice: Codable, Sendable {
    public var shape: ConvLayerShape
    public var layers: [String]
    public var algorithm: ConvAlgorithm
    /// Milliseconds per call of each candidate on rank 0 (empty when fixed by the config or reused).
    public var milliseconds: [String: Double]
    /// F(4×4)'s measured `max|Δ| / max|y|` against the direct convolution (nil when not measured).
    public var winograd4Error: Double?
    /// Where the choice came from: `auto`, `config`, `reused` (read back from output.dir) or
    /// `checkpoint` (`--resume`: the checkpoint's `kdgraph.conv_algorithms`).
    public var source: String
}

/// `runtime.conv_algorithm` (docs/config.md, docs/ops.md): sets `Conv2d.algorithm` on every
/// 3×3 layer of the student and the teacher that a Winograd algorithm applies to: stride 1, and stride 2
/// with padding 1 and channels multiples of 8 (where `winograd4` is F(4×4, 2×2) over the input's phases and
/// F(2×2) does not apply: such a layer's choice is `direct` or `winograd4`).
///
/// - `direct`, `winograd2`, `winograd4`: that algorithm everywhere it applies (`direct` elsewhere).
/// - `auto` (the default): each distinct layer shape by a fixed rule (`byRule`: the shape and the
///   measured error bound of F(4×4) on the layer's own weights, never a timing), so the same command
///   gives the same bits on every run, whatever the machine's load.
/// - `timed` (opt-in, in the spirit of cuDNN's benchmark mode and FFTW's wisdom): rank 0 times each
///   distinct layer shape once — direct, F(2×2) and F(4×4) on up to `timingImages` random images, one
///   warm-up then the best of `timingRepeats` — and takes the fastest; F(4×4) only when its measured
///   error against the direct convolution is at most `winograd4Tolerance`. The choice is broadcast, so
///   every rank runs the same algorithm.
///
/// Choices already in `wisdom` (a previous run's `conv_algorithms.json` in the same output.dir, e.g.
/// on resume) are reused as they are, so a resumed or repeated run keeps its numerics; wisdom written before
/// stride-2 layers had choices (it has none) gives them direct, which that run ran.
public enum ConvAlgorithmTuner {
    /// F(4×4)'s per-layer error budget: the end-to-end logits budget 1e-4 (docs/ops.md) over ~25
    /// layers whose independent rounding errors grow like √L: 1e-4 / √25 = 2e-5.
    public static let winograd4Tolerance = 2e-5
    public static let timingImages = 16
    public static let timingRepeats = 2
    public static let fileName = "conv_algorithms.json"

    /// Applies `setting` (`auto`, `timed` or a `ConvAlgorithm` raw value) to `models` for NHWC inputs of
    /// `imageShape` (`[H, W, C]`) in batches of `batch` images, and returns the choices; `timed` chooses
    /// the per-layer algorithms by timing, otherwise by the fixed rule.
    public static func configure(setting: String, models: [(name: String, model: any Classifier, training: Bool)],
                                 imageShape: [Int], batch: Int, comm: Communicator,
                                 wisdom: [ConvAlgorithmChoice] = [],
                                 timed: Bool = false) throws -> [ConvAlgorithmChoice] {
        // One-image probe forward (eval mode, no tape) to see each conv's input shape.
        var layers: [(String, Conv2d, ConvLayerShape)] = []
        for (prefix, model, training) in models {
            guard imageShape.count == 3, !(model is MLP) else { continue }
            let wasTraining = model.training
            model.eval()
            defer { model.train(wasTraining) }
            _ = try withNoGrad { try model(Tensor.zeros([1] + imageShape)) }
            // In module order: the same on every rank, so the choices line up for the broadcast.
            for (n, m) in model.namedModules() {
                guard let conv = m as? Conv2d, conv.winogradApplies || conv.stridedWinogradApplies,
                      conv.lastInputShape.count == 4 else { continue }
                let shape = conv.lastInputShape
                layers.append((prefix + "." + n, conv,
                               ConvLayerShape(h: shape[1], w: shape[2], cin: shape[3], cout: conv.outChannels,
                                              padding: conv.padding, stride: conv.stride, training: training)))
            }
        }
        var shapes: [ConvLayerShape] = []
        var first: [ConvLayerShape: Conv2d] = [:]
        for (_, conv, s) in layers where first[s] == nil { shapes.append(s); first[s] = conv }

        var choices = shapes.map { s in
            ConvAlgorithmChoice(shape: s, layers: layers.filter { $0.2 == s }.map { $0.0 }, algorithm: .direct,
                                milliseconds: [:], winograd4Error: nil, source: "config")
        }
        if let fixed = ConvAlgorithm(rawValue: setting) {
            for i in choices.indices { choices[i].algorithm = applicable(fixed, choices[i].shape) }
        } else {
            let known = Dictionary(wisdom.map { ($0.shape, $0.algorithm) }, uniquingKeysWith: { a, _ in a })
            // Wisdom written before stride-2 layers had choices (none in it) ran them direct.
            let beforeStrided = !wisdom.isEmpty && wisdom.allSatisfy { $0.shape.stride == 1 }
            var codes = [Int32](repeating: 0, count: shapes.count)
            if comm.rank == 0 {
                for (i, s) in shapes.enumerated() {
                    if let a = known[s] ?? (beforeStrided && s.stride != 1 ? .direct : nil) {
                        choices[i].algorithm = a; choices[i].source = "reused"
                    } else if timed {
                        choices[i] = measure(choices[i], weight: first[s]!.weight, batch: min(batch, timingImages))
                    } else {
                        choices[i] = byRule(choices[i], weight: first[s]!.weight)
                    }
                    codes[i] = Int32(ConvAlgorithm.allCases.firstIndex(of: choices[i].algorithm)!)
                }
            }
            try comm.broadcast(&codes, root: 0)
            for i in choices.indices where comm.rank != 0 {
                choices[i].algorithm = ConvAlgorithm.allCases[Int(codes[i])]
                choices[i].source = timed ? "timed" : "rule"
            }
        }
        let byShape = Dictionary(uniqueKeysWithValues: choices.map { ($0.shape, $0.algorithm) })
        for (_, conv, s) in layers { conv.algorithm = byShape[s] ?? .direct }
        return choices
    }

    /// `a` where it applies to layers of shape `s`, else `direct` (F(2×2) on a stride-2 layer).
    static func applicable(_ a: ConvAlgorithm, _ s: ConvLayerShape) -> ConvAlgorithm {
        s.stride == 1 || a == .winograd4 ? a : .direct
    }

    /// `byRule` takes a layer with fewer input channels than this for a stem layer: direct.
    public static let stemChannels = 16

    /// `auto`: no timing (a choice that depends on the machine's load would make two runs of one command
    /// differ): direct for a stem layer (fewer than `stemChannels` input channels), else F(4×4) when its
    /// error on `weight` (measured as `measure` does, on seeded images) is within `winograd4Tolerance`,
    /// else F(2×2) — what timing picks on this project's ResNets (docs/ops.md). A stride-2 layer: F(4×4, 2×2)
    /// under the same error test where it only infers (the teacher, whose filter bank is made once), direct
    /// where it trains (its two banks, forward and input gradient, made every step, cost about what the
    /// GEMMs save: `kdgraph bench --ops`, `strided_layer_f4`).
    static func byRule(_ c: ConvAlgorithmChoice, weight: Tensor) -> ConvAlgorithmChoice {
        var c = c
        let s = c.shape
        c.source = "rule"
        if s.cin < stemChannels || (s.stride != 1 && s.training) { c.algorithm = .direct; return c }
        c.winograd4Error = winograd4Error(s, weight: weight, images: probeImages(s, batch: timingImages))
        c.algorithm = (c.winograd4Error ?? 1) <= winograd4Tolerance ? .winograd4 : applicable(.winograd2, s)
        return c
    }

    /// `batch` random images of layer shape `s`, seeded by the shape (the same on every rank and run).
    static func probeImages(_ s: ConvLayerShape, batch: Int) -> Tensor {
        var rng = KDRandom(keys: 0xC0_4E, UInt64(s.h), UInt64(s.cin), UInt64(s.cout))
        return Tensor.randn([max(1, batch), s.h, s.w, s.cin], rng: &rng)
    }

    /// F(4×4)'s `max|Δ| / max|y|` against the direct convolution on `images` (`probeImages`).
    static func winograd4Error(_ s: ConvLayerShape, weight: Tensor, images x: Tensor) -> Double? {
        let w = weight.detached()
        guard let direct = try? withNoGrad({
                  try conv2d(x, weight: w, bias: nil, stride: s.stride, padding: s.padding)
              }),
              let f4 = try? withNoGrad({
                  try conv2d(x, weight: w, bias: nil, stride: s.stride, padding: s.padding, algorithm: .winograd4)
              }) else { return nil }
        var maxY: Float = 0, maxD: Float = 0
        for i in 0..<direct.count {
            maxY = max(maxY, abs(direct.ptr[i])); maxD = max(maxD, abs(direct.ptr[i] - f4.ptr[i]))
        }
        return maxY > 0 ? Double(maxD / maxY) : 0
    }

    /// Times direct, F(2×2) and F(4×4) (stride 2: direct and F(4×4, 2×2)) on `batch` random images with
    /// `weight`, and picks.
    static func measure(_ c: ConvAlgorithmChoice, weight: Tensor, batch: Int) -> ConvAlgorithmChoice {
        var c = c
        let s = c.shape
        let x = probeImages(s, batch: batch)
        let w = weight.detached()
        // Inference layers (the frozen teacher) run as FusedResNet does: each algorithm a `FusedConv` (its
        // Winograd filter bank made once, when the teacher is built, so not timed) with its epilogue; training
        // layers transform every call.
        let candidates = ConvAlgorithm.allCases.filter { applicable($0, s) == $0 }
        let fused = s.training ? [:] : Dictionary(uniqueKeysWithValues: candidates.map {
            ($0, FusedConv(weight: w, bias: Tensor.zeros([s.cout]), stride: s.stride, padding: s.padding,
                           algorithm: $0))
        })
        let g = ConvGeometry(n: x.shape[0], h: s.h, w: s.w, cin: s.cin, kh: 3, kw: 3, stride: s.stride,
                             padding: s.padding)
        let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, s.cout])
        var scratch: Tensor? = nil
        func run(_ a: ConvAlgorithm) throws -> Tensor {
            if let conv = fused[a] {
                conv.run(x.ptr, n: g.n, h: s.h, w: s.w, residual: nil, relu: true, out: out.ptr, scratch: &scratch)
                return out
            }
            x.requiresGrad = true; w.requiresGrad = true
            defer { x.requiresGrad = false; w.requiresGrad = false; x.grad = nil; w.grad = nil; Tape.reset() }
            Tape.reset()
            let y = try conv2d(x, weight: w, bias: nil, stride: s.stride, padding: s.padding, algorithm: a)
            Tape.backward(y, seed: y.detached())
            return y
        }
        do {
            c.winograd4Error = winograd4Error(s, weight: weight, images: x)
            var best = (ConvAlgorithm.direct, Double.infinity)
            for a in candidates {
                if a == .winograd4, (c.winograd4Error ?? 1) > winograd4Tolerance { continue }
                _ = try run(a)
                var t = Double.infinity
                for _ in 0..<timingRepeats {
                    let t0 = monotonicSeconds(); _ = try run(a); t = min(t, monotonicSeconds() - t0)
                }
                c.milliseconds[a.rawValue] = t * 1000
                if t < best.1 { best = (a, t) }
            }
            c.algorithm = best.0
        } catch {
            c.algorithm = .direct   // shapes come from a successful forward; direct always applies
        }
        c.source = "timed"
        return c
    }

    /// The choices as one line of JSON: checkpoint metadata `kdgraph.conv_algorithms`.
    public static func metadataValue(_ choices: [ConvAlgorithmChoice]) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? e.encode(choices)).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
    }

    /// Sets every layer named in `choices` (names as `configure` gives them: `student.layer1.0.conv1`)
    /// to its recorded algorithm: `--resume` under `auto` runs the checkpoint's algorithms, not a new
    /// timing's, so the resumed run computes what the uninterrupted one would have. Layers the
    /// choices do not name keep their algorithm, except stride-2 layers that F(4×4, 2×2) applies to: a
    /// recording made before such layers had choices ran them direct, and so do they. A named layer that
    /// does not exist is an error.
    public static func apply(_ choices: [ConvAlgorithmChoice],
                             models: [(name: String, model: any Classifier, training: Bool)]) throws {
        let convs = namedConvolutions(models)
        for c in choices {
            for name in c.layers {
                guard let conv = convs[name] else {
                    throw TrainError.io(path: "kdgraph.conv_algorithms", message: "no layer \(name) in this model")
                }
                conv.algorithm = c.algorithm
            }
        }
        runUnrecordedStridedDirect(convs, recorded: Set(choices.flatMap(\.layers)))
    }

    /// Sets the layers of `convs` that F(4×4, 2×2) applies to (stride 2) and `recorded` does not name to
    /// direct: a recording (a checkpoint's choices, a teacher cache's manifest) made before such layers had
    /// choices names none of them, and its run computed them direct.
    static func runUnrecordedStridedDirect(_ convs: [String: Conv2d], recorded: Set<String>) {
        for (name, conv) in convs where conv.stridedWinogradApplies && !recorded.contains(name) {
            conv.algorithm = .direct
        }
    }

    /// Every convolution of `models` by the name `configure` gives it (`student.layer1.0.conv1`).
    public static func namedConvolutions(_ models: [(name: String, model: any Classifier, training: Bool)])
        -> [String: Conv2d] {
        var convs: [String: Conv2d] = [:]
        for (prefix, model, _) in models {
            for (n, m) in model.namedModules() { if let c = m as? Conv2d { convs[prefix + "." + n] = c } }
        }
        return convs
    }

    /// Reads a previous run's choices from `directory` (empty when absent or unreadable).
    public static func readWisdom(directory: String) -> [ConvAlgorithmChoice] {
        let path = (directory as NSString).appendingPathComponent(fileName)
        guard let d = FileManager.default.contents(atPath: path),
              let c = try? JSONDecoder().decode([ConvAlgorithmChoice].self, from: d) else { return [] }
        return c
    }

    /// Writes the choices as JSON to `directory/conv_algorithms.json`.
    public static func write(_ choices: [ConvAlgorithmChoice], directory: String) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try e.encode(choices).write(to: URL(fileURLWithPath: (directory as NSString).appendingPathComponent(fileName)))
    }

    /// One log line per shape: `conv 32×32×64→64 p1 fwd: winograd2 (direct 12.1 ms, …) [layers]`.
    public static func summary(_ choices: [ConvAlgorithmChoice]) -> [String] {
        choices.map { c in
            let ms = ConvAlgorithm.allCases.compactMap { a in
                c.milliseconds[a.rawValue].map { "\(a.rawValue) \(String(format: "%.2f", $0)) ms" }
            }
            let err = c.winograd4Error.map { String(format: ", F4 error %.1e", $0) } ?? ""
            let timings = ms.isEmpty ? "" : "; " + ms.joined(separator: ", ")
            return "conv \(c.shape): \(c.algorithm.rawValue) (\(c.source)\(timings)\(err)) × \(c.layers.count) layers"
        }
    }
}
