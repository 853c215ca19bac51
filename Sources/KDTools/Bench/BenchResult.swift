import Foundation
import KDComm
import KDLosses
import KDTrain

/// The output of `kdgraph bench --config C.yaml`, one JSON object (keys in snake_case, e.g.
/// `samples_per_s`, `step_median_s`, `phases.teacher.median_s`): written by `StepBench`, read back by
/// `ScalingRunner` (`bench_N.json`) — one type for both sides.
public struct BenchResult: Codable, Equatable {
    public struct Spread: Codable, Equatable {
        public var medianS: Double
        public var p90S: Double
    }
    public struct SweepPoint: Codable, Equatable {
        public var bytes: Int
        public var seconds: Double
    }

    public var samplesPerS: Double
    public var samplesPerSPerRank: Double
    public var ranks: Int
    public var globalBatch: Int
    public var views: Int
    public var steps: Int
    public var warmup: Int
    public var student: String
    public var teacher: String
    public var stepMedianS: Double
    public var stepP90S: Double
    /// Median and p90 seconds of each phase (`Phase` names) and of `gather_wait`.
    public var phases: [String: Spread]
    /// (all-reduce + gather wait) / step, and the data wait / step.
    public var commShare: Double
    public var dataWaitShare: Double
    public var bytesGatheredPerStep: Int
    public var bytesAllreducedPerStep: Int
    public var peakRssBytes: Int
    public var peakRssBytesPerRank: [Int]
    public var tensorPoolPeakBytes: Int
    /// Median all-reduce time by message size (what the scaling report's cost model is fitted to).
    public var allreduceSweep: [SweepPoint]
    public var perRankBatch: Int
    /// The collectives of one step besides the gradient all-reduce (for the projection).
    public var statisticsAllreducesPerStep: Int
    public var statisticsBytesPerStep: Int
    public var gathersPerStep: Int
    public var gatheredBytesPerSample: Int
    public var reduceScattersPerStep: Int
    public var reduceScatteredBytesPerSample: Int
    /// One rank's loss share timed at larger world sizes (`--project-ranks`).
    public var lossProjection: [LossProjection.Point]
    public var host: String
    public var cores: Int
    /// The kernels that ran: OpenBLAS's core (`blasCoreName`, e.g. `SkylakeX`) and the row-invariant GEMM's
    /// register block (`avx512 12x32` or `avx2 6x16`, docs/ops.md "Instruction set"); absent in results of
    /// earlier versions.
    public var kernels: [String: String]? = nil
    /// The same step in PyTorch, measured in the same run (`--pytorch`), when it was.
    public var pytorch: PyTorchComparison.Result? = nil
    /// The teacher forward in ONNX Runtime and OpenVINO, measured in the same run beside PyTorch where the
    /// interpreter imports them (`InferencePeers`); absent otherwise.
    public var inferencePeers: [InferencePeers.Peer]? = nil
    /// The step reading the teacher cache (`--teacher-cache`), when it was measured.
    public var teacherCache: TeacherCacheBench.Report? = nil
    /// One rank's share of the objective, forward + backward, timed on the last step's real inputs at this
    /// world size (the row-sharded terms' all-reduces included; the slowest rank's median of 3); absent in
    /// results of earlier versions.
    public var lossShareS: Double? = nil
    /// The step with and without `train.deterministic` (`--deterministic`), when it was measured.
    public var deterministic: DeterministicBench.Report? = nil
    /// `MemoryEstimate` of one rank's step (what the trainer checks the config against before it
    /// allocates), beside the measured `peak_rss_bytes` and `tensor_pool_peak_bytes`; absent in results
    /// of earlier versions.
    public var estimatedStepBytes: Int? = nil
    /// Each rank's tensor-pool high-water mark (rank order); absent in results of earlier versions.
    public var tensorPoolPeakBytesPerRank: [Int]? = nil
    /// Graph accumulation (`train.micro_batch`): samples per rank per pass, and the estimate of the same step
    /// in one pass (not run); absent without it.
    public var microBatch: Int? = nil
    public var estimatedOnePassBytes: Int? = nil
    /// The spectral term's teacher eigensolves during the bench on rank 0 (dense, iterative, fallbacks to
    /// dense, restart cycles), when the objective has one; absent otherwise.
    public var spectralSolves: SpectralSolverStatistics? = nil
    /// Whether the machine stayed quiet during the measurement (`MachineLoad`: its readings and warnings);
    /// nil in results of earlier versions.
    public var load: MachineLoad? = nil
    /// The link probe across hosts after the measured steps (`LinkProbe`: each host's best-link bandwidth,
    /// the straggler it names); nil on one host and in results of earlier versions.
    public var linkProbe: LinkProbe.Report? = nil

    public func json() throws -> String {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys]
        return String(decoding: try e.encode(self), as: UTF8.self)
    }

    /// The `teacher` a bench of `config` records: the network's model, `embeddings`, or `none` (supervised).
    public static func teacherName(_ config: KDConfig) -> String {
        config.mode == .distill ? (config.teacher.kind == .network ? config.teacher.model : "embeddings") : "none"
    }

    /// Reads a `kdgraph bench` JSON file; the error names the file.
    public static func read(_ path: String) throws -> BenchResult {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainError.io(path: path, message: "missing (did the bench run?)")
        }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        do { return try d.decode(BenchResult.self, from: data) } catch DecodingError.keyNotFound(let key, _) {
            throw TrainError.io(path: path,
                                message: "no '\(snakeCase(key.stringValue))' (not a bench result of this version?)")
        } catch {
            throw TrainError.io(path: path, message: "not a kdgraph bench result: \(error)")
        }
    }

    /// `gathersPerStep` → `gathers_per_step`, as the encoder writes it.
    static func snakeCase(_ s: String) -> String {
        s.reduce(into: "") { out, ch in
            if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
        }
    }
}
