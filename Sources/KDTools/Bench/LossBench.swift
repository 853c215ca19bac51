import Foundation
import KDCore
import KDData
import KDLosses
import KDTensor

/// Loss micro-benchmarks for `kdgraph bench --ops`: for each registered loss kind (its default
/// parameters) and global batch, one forward+backward of this rank's share with the shard = the whole
/// batch (one rank does all the work), on random inputs with what the term `needs` (student dimension =
/// teacher dimension = `dim`, `classes` classes, 2 views per sample for a term that needs them).
/// One JSON line per (loss, batch): `ms` wall time of forward+backward, `cpu_ms` the process CPU time
/// (user + system, all threads: the honest figure on a loaded machine) and `peak_bytes`, the
/// BufferPool high-water mark above what was live before the loss ran (Float64 scratch included;
/// Swift arrays of O(n) size and the spectral loss's Float64 eigensolver arrays are not).
public enum LossBench {
    public static var losses: [String] { LossRegistry.all.map(\.kind) }

    public static func run(batches: [Int] = [256, 1024], dim: Int = 256, classes: Int = 100,
                           losses: [String] = LossBench.losses) -> [String] {
        var lines: [String] = []
        for b in batches {
            for name in losses {
                var line: [String: Any] = ["bench": "loss", "loss": name, "batch": b, "dim": dim, "classes": classes]
                do {
                    let term = try LossRegistry.makeDefault(name)
                    let views = term.needs.contains(.twoViews) ? 2 : 1
                    let n = b * views
                    var rng = KDRandom(keys: 17, UInt64(b), UInt64(name.utf8.count))
                    let inputs = LossInputs(
                        plan: BatchPlan(globalSamples: b), views: views,
                        studentFeatures: Tensor.randn([n, dim], rng: &rng),
                        studentEmbedding: Tensor.randn([n, dim], rng: &rng),
                        studentLogits: Tensor.randn([n, classes], std: 3, rng: &rng),
                        teacherEmbedding: Tensor.randn([n, dim], rng: &rng),
                        teacherLogits: Tensor.randn([n, classes], std: 3, rng: &rng),
                        proxies: Tensor.randn([classes, dim], rng: &rng), labels: (0..<b).map { $0 % classes })
                    for t in [inputs.studentFeatures, inputs.studentEmbedding, inputs.studentLogits] {
                        t?.requiresGrad = true
                    }
                    line["rows"] = n
                    Tape.reset()
                    BufferPool.shared.resetPeak()
                    let before = BufferPool.shared.bytesInUse
                    let start = DispatchTime.now().uptimeNanoseconds
                    let cpu0 = processCPUSeconds()
                    let r = try term.evaluate(inputs)
                    r.value.backward()
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    line["ms"] = (ms * 100).rounded() / 100
                    line["cpu_ms"] = ((processCPUSeconds() - cpu0) * 1e5).rounded() / 100
                    line["peak_bytes"] = BufferPool.shared.peakBytes - before
                    line["loss_value"] = Double(r.value.item)
                } catch {
                    line["error"] = "\(error)"
                }
                Tape.reset()
                lines.append(Conformance.json(line))
            }
        }
        return lines
    }
}

func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6
        + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}
