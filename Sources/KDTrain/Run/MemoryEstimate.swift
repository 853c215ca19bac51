import Foundation
import KDLosses
import KDModels

/// What one rank's training step needs in memory, estimated from the config and the opened data before
/// any tensor is allocated, so that `data.image_size: 100000` is refused with the keys that drive it
/// rather than crashing on a 7.68 TB allocation (docs/reliability.md, "Memory").
///
/// It is a lower estimate on purpose: it counts only what the step cannot avoid holding at once (the
/// tensors the student's tape keeps, the teacher's two largest activations, parameters with their
/// gradients and optimizer state, the gradient buckets, the loss matrices, the batches in flight,
/// the mapped data) and leaves out kernel scratch (im2col), so a config it refuses cannot fit and one
/// that fits is never refused. `kdgraph bench` prints it beside the measured peak (`BenchResult`).
public struct MemoryEstimate: Equatable, CustomStringConvertible {
    /// Bytes per part, largest first in `description`.
    public var studentActivations = 0
    public var teacherActivations = 0
    public var batches = 0
    public var parameters = 0
    public var lossMatrices = 0
    public var data = 0
    /// The sampler's index arrays: an epoch's permutation and the one being drawn (8 bytes per sample).
    public var sampler = 0
    /// Images (or feature rows) per rank per step: per-rank batch × views.
    public var imagesPerRank = 0
    /// `H×W×C` of one input (for the message).
    public var imageShape = ""

    public var total: Int {
        studentActivations + teacherActivations + batches + parameters + lossMatrices + data + sampler
    }

    /// The estimate for `c` on the opened data.
    public init(config c: KDConfig, data d: TrainingData, worldSize: Int) {
        self.init(config: c, inputChannels: d.inputChannels, inputSize: d.inputSize, features: d.isFeatures,
                  residentBytes: d.residentBytes, worldSize: worldSize)
        sampler = 2 * d.trainCount * MemoryLayout<Int>.stride
    }

    /// The estimate for `c` on inputs of `inputChannels` × `inputSize` (`[H, W]`; feature rows: `[1, D]`)
    /// with `residentBytes` of data in memory.
    public init(config c: KDConfig, inputChannels: Int, inputSize: [Int], features: Bool, residentBytes: Int,
                worldSize: Int) {
        // In Double: a config such as image_size 10⁹ must give a huge estimate, not an Int overflow trap.
        func bytes(_ x: Double) -> Int { x >= 1e18 ? Int(1e18) : Int(x) }
        let perRank = Double((c.data.globalBatch + worldSize - 1) / max(1, worldSize))
        let images = perRank * Double(features ? 1 : c.data.views)
        imagesPerRank = Int(images)
        imageShape = "\(inputSize[0])×\(inputSize[1])×\(inputChannels)"
        let (h, w) = (Double(inputSize[0]), Double(inputSize[1]))
        let f = Double(MemoryLayout<Float>.stride)
        // The batch the step runs on and the one the prefetcher has ready.
        batches = bytes(2 * images * h * w * Double(inputChannels) * f)
        let hidden = ModelZoo.hiddenSizes(c.student.hidden)
        let student = MemoryEstimate.shape(c.student.model, channels: inputChannels, height: h, width: w,
                                           classes: c.data.classes, hidden: hidden)
        // With graph accumulation (`train.micro_batch`) the tape and the teacher hold one pass's images; the
        // outputs of the whole share stay, with their gradients (counted as the logits: a lower bound).
        let passImages = c.train.microBatch > 0 ? min(images, Double(c.train.microBatch * c.data.views)) : images
        studentActivations = bytes(passImages * student.activations * f)
        if c.train.microBatch > 0 { studentActivations += bytes(2 * images * Double(c.data.classes) * f) }
        // Weights, gradients, optimizer state (SGD momentum: 1, AdamW: 2), and the bucket copy.
        let states = c.optim.kind == .adamw ? 2.0 : (c.optim.momentum > 0 ? 1 : 0)
        var params = student.parameters * f * (2 + states)
        // Deterministic training's sample blocks on this rank (each carries its own gradient partials).
        let localBlocks = Double((Int(perRank) + c.samplesPerBlock - 1) / c.samplesPerBlock)
        if c.train.deterministic {   // instead of the bucket copy: a gradient partial per local block, Int64 sums
            params += student.parameters * (localBlocks * f + Double(MemoryLayout<Int64>.stride))
        } else {
            params += student.parameters * f
        }
        if c.mode == .distill && c.teacher.kind == .network {
            let teacherHidden = ModelZoo.hiddenSizes(c.teacher.hidden)
            let t = MemoryEstimate.shape(c.teacher.model, channels: inputChannels, height: h, width: w,
                                         classes: c.data.classes, hidden: teacherHidden)
            teacherActivations = bytes(passImages * t.largestTwo * f)
            params += t.parameters * f
        }
        parameters = bytes(params)
        if c.mode == .distill {
            // One Float matrix over the global batch (the relational losses hold several): a tile of the
            // rank's rows × all rows (row-sharded pairs built in tiles of at most 2²² values, docs/losses.md
            // "share contract"), and the gradient of the gathered rows on the rank's own rows; deterministic
            // training keeps it per local loss block, each block's rows and up to 256 RKD angle partners (at
            // the widest gathered student matrix: the class count or 512 features, whichever is larger).
            let rows = c.data.globalBatch * c.data.views, own = perRank * Double(c.data.views)
            var matrices = min(own, Double(pairwiseTileRows(columns: rows))) * Double(rows)
            let width = Double(max(c.data.classes, 512))
            matrices += (c.train.deterministic ? own + localBlocks * 256 : own) * width
            lossMatrices = bytes(matrices * f)
        }
        data = residentBytes
    }

    /// Tape activations (elements per image), the two largest activations (inference) and the
    /// parameter count of zoo model `name`; zero for an unknown name (the model zoo refuses it later).
    static func shape(_ name: String, channels: Int, height: Double, width: Double, classes: Int,
                      hidden: [Int]) -> (activations: Double, largestTwo: Double, parameters: Double) {
        func half(_ x: Double) -> Double { (x / 2).rounded(.up) }
        let pixels = [height * width, half(height) * half(width), half(half(height)) * half(half(width))]
        let k = Double(classes)
        var kept = 0.0, params = 0.0, largest: [Double] = []
        func keep(_ tensors: Double, _ planes: Double, _ stage: Int) {
            kept += tensors * planes * pixels[stage]
            largest.append(planes * pixels[stage])
        }
        func result() -> (Double, Double, Double) {
            largest.sort(by: >)
            return (kept, largest.prefix(2).reduce(0, +), params)
        }
        if name == "mlp" {
            var d = height * width * Double(channels)
            for size in hidden.map(Double.init) {
                params += d * size + size; kept += 2 * size; largest.append(size); d = size
            }
            params += d * k + k
            return result()
        }
        // Tensors the tape keeps per block and in the stem; a BatchNorm or a sum and the ReLU after it are one
        // op (one tensor).
        var filters: [Double], blocks: Int, perBlock: Double, stem: Double
        if name.hasPrefix("resnet"), let depth = Int(name.dropFirst(6).prefix { $0.isNumber }), depth >= 8 {
            filters = name.hasSuffix("x4") ? [32, 64, 128, 256] : [16, 16, 32, 64]
            blocks = (depth - 2) / 6
            perBlock = 5   // conv1, bn1 + ReLU, conv2, bn2, the sum + ReLU (`addReLU`)
            stem = 2       // conv1, bn1 + ReLU
        } else if name.hasPrefix("wrn_") {
            let parts = name.split(separator: "_").compactMap { Int($0) }
            guard parts.count == 2, parts[0] >= 10 else { return (0, 0, 0) }
            filters = [16, 16, 32, 64].enumerated().map { $0.offset == 0 ? $0.element : $0.element * Double(parts[1]) }
            blocks = (parts[0] - 4) / 6
            perBlock = 5   // bn1 + ReLU, conv1, bn2 + ReLU, conv2, the sum
            stem = 1       // conv1
        } else {
            return (0, 0, 0)
        }
        keep(stem, filters[0], 0)
        params += 9 * Double(channels) * filters[0] + 2 * filters[0]
        var inPlanes = filters[0]
        for stage in 0..<3 {
            let planes = filters[stage + 1]
            for _ in 0..<blocks {
                keep(perBlock, planes, stage)
                params += 9 * inPlanes * planes + 9 * planes * planes + 4 * planes
                if inPlanes != planes { params += inPlanes * planes + 2 * planes }
                inPlanes = planes
            }
        }
        params += inPlanes * k + k
        return result()
    }

    /// The bytes one rank may use: `runtime.memory_limit_gb`, or the machine's physical memory shared
    /// by the ranks on it (Open MPI's `OMPI_COMM_WORLD_LOCAL_SIZE`, else 1).
    public static func limitBytes(config c: KDConfig) -> (bytes: Int, source: String) {
        if c.runtime.memoryLimitGB > 0 {
            return (Int(c.runtime.memoryLimitGB * 1e9), "runtime.memory_limit_gb \(c.runtime.memoryLimitGB)")
        }
        let env = ProcessInfo.processInfo.environment
        let local = max(1, env["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1)
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        return (physical / local, "\(gb(physical)) of physical memory shared by \(local) rank(s) on this machine")
    }

    /// Throws when the estimate exceeds the limit, naming the keys that drive the largest parts. `chunked(m)`:
    /// the estimate's total with `train.micro_batch: m`; when activations are among the largest parts and
    /// passes of whole blocks would fit, the message names the largest such `m`.
    public func check(config c: KDConfig, chunked: ((Int) -> Int)? = nil) throws {
        let (limit, source) = MemoryEstimate.limitBytes(config: c)
        guard total > limit else { return }
        let images = "data.image_size (\(imageShape)), data.global_batch and data.views (\(imagesPerRank) images per "
            + "rank)"
        let parts: [(String, Int, String)] = [
            ("student activations", studentActivations, "\(images) and student.model"),
            ("teacher activations", teacherActivations, "\(images) and teacher.model"),
            ("input batches", batches, images),
            ("parameters and optimizer state", parameters, "student.model, teacher.model, student.hidden"),
            ("loss matrices (own rows × B)", lossMatrices, "data.global_batch and data.views"),
            ("data in memory", data, "data.path"),
            ("sampler indices", sampler, "data.train_size, data.path"),
        ]
        let top = parts.filter { $0.1 > 0 }.sorted { $0.1 > $1.1 }.prefix(2)
        let listed = top.map { "\($0.0) \(MemoryEstimate.gb($0.1)) (\($0.2))" }.joined(separator: "; ")
        // Activations scale with the samples a pass holds: graph accumulation bounds them, keeping the graph.
        var chunks = ""
        if c.train.microBatch == 0, top.contains(where: { $0.0.hasSuffix("activations") }), let chunked {
            // The most whole blocks, fewer than the share, whose pass fits (the total grows with the pass).
            let block = c.samplesPerBlock, share = imagesPerRank / max(1, c.data.views)
            var (lo, hi) = (0, (share - 1) / block)
            while lo < hi {
                let mid = (lo + hi + 1) / 2
                if chunked(mid * block) <= limit { lo = mid } else { hi = mid - 1 }
            }
            if lo > 0 {
                let m = lo * block
                chunks = ", run the step in passes of at most \(m) samples (train.micro_batch, with "
                    + "student.batch_norm: block; the graph still spans the global batch: "
                    + "docs/training.md, \"Graphs larger than memory\")"
            }
        }
        throw c.configError(top.first.map { MemoryEstimate.firstKey($0.2) } ?? "data",
                            "one rank's training step needs at least \(MemoryEstimate.gb(total)) but "
                                + "\(MemoryEstimate.gb(limit)) is available (\(source)): \(listed). Lower those keys, "
                                + "run on more ranks\(chunks), or set runtime.memory_limit_gb if the limit is wrong")
    }

    static func firstKey(_ keys: String) -> String { String(keys.prefix { $0 != "," && $0 != " " }) }

    /// `12.3 GB` (decimal units, as `runtime.memory_limit_gb`).
    public static func gb(_ bytes: Int) -> String {
        let g = Double(bytes) / 1e9
        return g >= 100 ? String(format: "%.0f GB", g) : g >= 1 ? String(format: "%.1f GB", g)
            : String(format: "%.0f MB", Double(bytes) / 1e6)
    }

    public var description: String {
        "\(MemoryEstimate.gb(total)) (student activations \(MemoryEstimate.gb(studentActivations)), teacher "
            + "\(MemoryEstimate.gb(teacherActivations)), batches \(MemoryEstimate.gb(batches)), parameters "
            + "\(MemoryEstimate.gb(parameters)), loss matrices \(MemoryEstimate.gb(lossMatrices)), data "
            + "\(MemoryEstimate.gb(data)))"
    }
}
