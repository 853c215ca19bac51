import Foundation
import KDTensor

/// Loss micro-benchmarks for `kdgraph bench`: for each loss and global batch, one forward+backward of
/// this rank's share with the shard = the whole batch (one rank does all the work), on random inputs
/// (student dimension = teacher dimension = `dim`, `classes` classes; VRM gets 2 views per sample).
/// One JSON line per (loss, batch): `ms` wall time of forward+backward, `cpu_ms` the process CPU time
/// (user + system, all threads: the honest figure on a loaded machine) and `peak_bytes`, the
/// BufferPool high-water mark above what was live before the loss ran (Float64 scratch included;
/// Swift arrays of O(n) size and the spectral loss's Float64 eigensolver arrays are not).
public enum LossBench {
    public static let losses = ["kd", "rkd_distance", "rkd_angle", "prg", "vrm", "spectral"]

    public static func run(batches: [Int] = [256, 1024], dim: Int = 256, classes: Int = 100,
                           losses: [String] = LossBench.losses) -> [String] {
        var lines: [String] = []
        for b in batches {
            for name in losses {
                var rng = KDRandom(keys: 17, UInt64(b), UInt64(name.utf8.count))
                let views = name == "vrm" ? 2 : 1
                let n = b * views
                let s = Tensor.randn([n, dim], rng: &rng), t = Tensor.randn([n, dim], rng: &rng)
                let zs = Tensor.randn([n, classes], std: 3, rng: &rng), zt = Tensor.randn([n, classes], std: 3, rng: &rng)
                let proxies = Tensor.randn([classes, dim], rng: &rng)
                s.requiresGrad = true; zs.requiresGrad = true
                Tape.reset()
                BufferPool.shared.resetPeak()
                let before = BufferPool.shared.bytesInUse
                let start = DispatchTime.now().uptimeNanoseconds
                let cpu0 = processCPUSeconds()
                var line: [String: Any] = ["bench": "loss", "loss": name, "batch": b, "rows": n, "dim": dim, "classes": classes]
                do {
                    let r: LossShare
                    switch name {
                    case "kd": r = try kdLoss(student: zs, teacher: zt)
                    case "rkd_distance": r = try rkdDistanceLoss(student: s, teacher: t)
                    case "rkd_angle": r = try rkdAngleLoss(student: s, teacher: t)
                    case "prg": r = try prgLoss(studentEmbedding: s, studentLogits: zs, teacherEmbedding: t, teacherLogits: zt, proxies: proxies)
                    case "vrm": r = try vrmLoss(student: zs, teacher: zt, views: 2)
                    case "spectral": r = try spectralLoss(student: s, teacher: t, k: min(classes, n / 2))
                    default: throw LossError.invalidArgument(loss: "bench", message: "unknown loss '\(name)' (known: \(LossBench.losses))")
                    }
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
                s.grad = nil; zs.grad = nil
                lines.append(Conformance.json(line))
            }
        }
        return lines
    }
}

/// User + system CPU seconds of this process (all threads).
func processCPUSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
}
