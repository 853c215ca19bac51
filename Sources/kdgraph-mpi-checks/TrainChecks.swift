import Foundation
import KDCore
import KDData
import KDModels
import KDTensor
import KDTrain

/// Multi-rank checks of the trainer: world-size invariance against the one-process run (computed on
/// each rank over a communicator of itself alone), resume, the desync checksum, the numerical guard.
enum TrainChecks {
    static let all: [MultiRankCheck] = [
        MultiRankCheck("train/invariance-prg-rkd-spectral-kd") { comm in
            try invariance(comm, losses: "[{kind: prg}, {kind: rkd}, {kind: spectral}, {kind: kd, weight: 0.5}]",
                           views: 1, batch: 10)
        },
        MultiRankCheck("train/invariance-vrm-views2") { comm in
            try invariance(comm, losses: "[{kind: vrm, q: 0.25}]", views: 2, batch: 6, augment: true)
        },
        MultiRankCheck("train/invariance-supervised-overlap") { comm in
            try invariance(comm, losses: nil, views: 1, batch: 12, overlap: true)
        },
        MultiRankCheck("train/resume-same-trajectory") { comm in try resume(comm) },
        MultiRankCheck("train/desync-detected") { comm in try desync(comm) },
        MultiRankCheck("train/nonfinite-guard") { comm in try nonFinite(comm) },
    ]

    /// Runs `body` in a fresh folder every rank agrees on (rank 0 makes it and broadcasts its name) and
    /// removes the folder once every rank is done with it. A check that fails leaves its folder for a look.
    static func inSharedTempDir(_ comm: Communicator, _ body: (String) throws -> Void) throws {
        var bytes = [UInt8](repeating: 0, count: 96)
        if comm.rank == 0 {
            let name = NSTemporaryDirectory() + "kdgraph-check-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: name, withIntermediateDirectories: true)
            for (i, b) in name.utf8.prefix(95).enumerated() { bytes[i] = b }
        }
        try comm.broadcast(&bytes, root: 0)
        let dir = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        try body(dir)
        try comm.barrier()
        if comm.rank == 0 { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// A random-weight resnet8 teacher checkpoint for 3-channel 16×16 images, 5 classes.
    static func teacherCheckpoint(_ comm: Communicator, dir: String) throws -> String {
        let path = dir + "/teacher.safetensors"
        if comm.rank == 0 {
            let t = try ModelZoo.make(name: "resnet8", classes: 5, inputChannels: 3, imageSize: [16, 16], seed: 99)
            try Checkpoint.save(path: path, model: t, metadata: ["purpose": "check"], rank: 0)
        }
        try comm.barrier()
        return path
    }

    static func config(dir: String, teacher: String, losses: String?, views: Int, batch: Int, overlap: Bool = false,
                       steps: Int = 8, augment: Bool = false) throws -> KDConfig {
        let yaml = """
        seed: 5
        mode: \(losses == nil ? "supervised" : "distill")
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 64, eval_size: 20, \
        global_batch: \(batch), views: \(views), augment: \(augment), prefetch: false}
        teacher: {kind: network, model: resnet8, checkpoint: "\(teacher)"}
        student: {model: resnet8, batch_norm: sync}
        loss: \(losses ?? "[]")
        optim: {kind: sgd, lr: 0.02, momentum: 0.9, weight_decay: 5e-4, schedule: cosine, warmup_steps: 2}
        train: {steps: \(steps), log_every: 1, sync_check_every: 4, deterministic: false}
        comm: {overlap: \(overlap), bucket_mb: 0.05}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: winograd2}
        """
        // The float path (`train.deterministic: false`: its 1e-4 invariance is what these checks hold;
        // Tests/mpi/deterministic.sh holds the default's exact one). A fixed algorithm (Winograd F(2×2), so
        // the Winograd training path runs under mpirun too).
        return try KDConfig.parse(yaml: yaml, file: "check.yaml")
    }

    /// Runs `steps` steps and returns the per-step global losses.
    static func losses(_ t: Trainer, steps: Int) throws -> [Double] {
        var out: [Double] = []
        let start = SamplerPosition(epoch: 0, step: 0).advanced(by: t.step, stepsPerEpoch: t.sampler.stepsPerEpoch)
        let stream = t.data.stream(t.sampler, from: start, steps: steps, depth: 1)
        defer { stream.shutdown() }
        for _ in 0..<steps {
            guard let b = try stream.next() else { throw CheckFailure("batch stream ended early") }
            try t.step(b)
            out.append(t.lastLoss)
        }
        return out
    }

    static func relDiff(_ a: Double, _ b: Double) -> Double { abs(a - b) / max(abs(b), 1e-6) }

    static func maxParamDiff(_ a: Trainer, _ b: Trainer) -> (Double, String) {
        var worst = 0.0, name = ""
        for ((n, p), (_, q)) in zip(a.parameters, b.parameters) {
            var md = 0.0, mx = 0.0
            for i in 0..<p.count { md = max(md, Double(abs(p.ptr[i] - q.ptr[i]))); mx = max(mx, Double(abs(q.ptr[i]))) }
            let r = md / max(mx, 1e-6)
            if r > worst { worst = r; name = n }
        }
        return (worst, name)
    }

    /// World-size invariance, step by step: before every step the one-process reference resumes from the
    /// distributed run's state (a checkpoint of it), so each comparison is one step taken from identical
    /// weights, momenta and statistics. Across several free-running steps the two trajectories drift apart
    /// chaotically (a last-bit difference flips a ReLU near zero and training amplifies it), by amounts that
    /// depend on the CPU's BLAS kernels; one step from the same state does not amplify anything.
    ///
    /// Tolerance 1e-4 relative for the loss and the parameters: the two runs differ only in the order of
    /// float32 sums (GEMMs over each rank's samples, SyncBN statistics, the loss shares, the all-reduce).
    /// A sum of n float32 terms in another order differs by at most n·u relative to Σ|x| (u = 6e-8), i.e.
    /// ≤ 6e-5 for the longest sums here (n ≤ 1000: 3×3×64 im2col rows, 10 rows × 64 features); the losses
    /// add their shares in Double. Parameters move by lr·Δgradient in one step, far below 1e-4 of their size.
    static func invariance(_ comm: Communicator, losses spec: String?, views: Int, batch: Int, overlap: Bool = false,
                           augment: Bool = false) throws {
        try inSharedTempDir(comm) { dir in try invariance(comm, dir: dir, losses: spec, views: views, batch: batch,
                                                          overlap: overlap, augment: augment) }
    }

    static func invariance(_ comm: Communicator, dir: String, losses spec: String?, views: Int, batch: Int,
                           overlap: Bool, augment: Bool) throws {
        let teacher = try teacherCheckpoint(comm, dir: dir)
        let cfg = try config(dir: dir, teacher: teacher, losses: spec, views: views, batch: batch, overlap: overlap,
                             augment: augment)
        let distributed = try Trainer(config: cfg, comm: comm)
        let reference = try Trainer(config: cfg, comm: try comm.alone())
        for s in 1...8 {
            if s > 1 { try reference.resume(from: try distributed.saveCheckpoint(name: "before_\(s).safetensors")) }
            let g = try losses(distributed, steps: 1)[0]
            let w = try losses(reference, steps: 1)[0]
            if relDiff(g, w) > 1e-4 {
                throw CheckFailure("step \(s): loss \(g) on \(comm.size) ranks vs \(w) in one process "
                                   + "from the same state (rel \(relDiff(g, w)))")
            }
            let (d, name) = maxParamDiff(distributed, reference)
            if d > 1e-4 {
                throw CheckFailure("step \(s): parameters differ from the one-process step: \(name) rel \(d)")
            }
        }
        // Evaluation of the same weights: each rank evaluates a share, the counts are summed.
        try reference.resume(from: try distributed.saveCheckpoint(name: "final.safetensors"))
        let e1 = try distributed.evaluate(), e2 = try reference.evaluate()
        // A sample whose two largest logits are closer than the reassociation error (~1e-6 relative) may
        // rank differently; with 20 samples of 5 classes none is expected, one is tolerated.
        if e1.samples != e2.samples || abs(e1.top1 - e2.top1) * Double(e1.samples) > 1.5 {
            throw CheckFailure("eval differs: \(e1) vs one-process \(e2)")
        }
    }

    static func resume(_ comm: Communicator) throws { try inSharedTempDir(comm) { try resume(comm, dir: $0) } }

    static func resume(_ comm: Communicator, dir: String) throws {
        let teacher = try teacherCheckpoint(comm, dir: dir)
        var cfg = try config(dir: dir, teacher: teacher, losses: "[{kind: prg}, {kind: rkd}]", views: 1, batch: 8,
                             steps: 8)
        let straight = try Trainer(config: cfg, comm: comm)
        let all = try losses(straight, steps: 8)
        cfg.outputDir = dir + "/half"
        let first = try Trainer(config: cfg, comm: comm)
        let a = try losses(first, steps: 4)
        let path = try first.saveCheckpoint(name: "half.safetensors")
        let second = try Trainer(config: cfg, comm: comm)
        try second.resume(from: path)
        guard second.step == 4 else { throw CheckFailure("resumed at step \(second.step), expected 4") }
        let b = try losses(second, steps: 4)
        for (s, (g, w)) in zip(a + b, all).enumerated() where relDiff(g, w) > 1e-6 {
            throw CheckFailure("step \(s + 1): resumed loss \(g) vs straight \(w)")
        }
        let (d, name) = maxParamDiff(second, straight)
        if d > 1e-6 { throw CheckFailure("resumed parameters differ: \(name) rel \(d)") }
    }

    static func desync(_ comm: Communicator) throws { try inSharedTempDir(comm) { try desync(comm, dir: $0) } }

    static func desync(_ comm: Communicator, dir: String) throws {
        let teacher = try teacherCheckpoint(comm, dir: dir)
        let t = try Trainer(config: try config(dir: dir, teacher: teacher, losses: nil, views: 1, batch: 8), comm: comm)
        try t.checkParametersInSync()
        guard comm.size > 1 else { return }
        if comm.rank == 1 { t.parameters[0].1.ptr[0] += 1e-3 }
        do {
            try t.checkParametersInSync()
            throw CheckFailure("a perturbed parameter on rank 1 was not detected")
        } catch let e as TrainError {
            guard "\(e)".contains("ranks 1 differ from rank 0") else { throw CheckFailure("unexpected message: \(e)") }
        }
    }

    static func nonFinite(_ comm: Communicator) throws {
        try inSharedTempDir(comm) { try nonFinite(comm, dir: $0) }
    }

    static func nonFinite(_ comm: Communicator, dir: String) throws {
        let teacher = try teacherCheckpoint(comm, dir: dir)
        var cfg = try config(dir: dir, teacher: teacher, losses: "[{kind: rkd}]", views: 1, batch: 8)
        setenv("KDGRAPH_NAN_STEP", "2", 1)
        defer { unsetenv("KDGRAPH_NAN_STEP") }
        let t = try Trainer(config: cfg, comm: comm)
        _ = try losses(t, steps: 1)
        let before = t.parameters.map { $0.1.copy() }
        do {
            _ = try losses(t, steps: 1)
            throw CheckFailure("a NaN loss at step 2 was not stopped")
        } catch let e as TrainError {
            guard "\(e)".contains("at step 2") else { throw CheckFailure("unexpected message: \(e)") }
        }
        for (p, q) in zip(t.parameters.map { $0.1 }, before) where p.array != q.array {
            throw CheckFailure("parameters changed on a non-finite step")
        }
        cfg.train.skipNonfinite = true
        let s = try Trainer(config: cfg, comm: comm)
        _ = try losses(s, steps: 1)
        // The skipped step's forward updated the BatchNorm running statistics: they, the parameters and
        // the momentum must all be back to their values before the step (issue 18 item 2).
        func state() -> [(String, [Float])] {
            (s.parameters + s.student.namedBuffers() + s.optimizer.stateTensors()).map { ($0.0, $0.1.array) }
        }
        let kept = state()
        _ = try losses(s, steps: 1)
        for ((name, now), (_, then)) in zip(state(), kept) where now.map(\.bitPattern) != then.map(\.bitPattern) {
            throw CheckFailure("skip_nonfinite: \(name) changed on the skipped step 2")
        }
        _ = try losses(s, steps: 1)
        guard s.step == 3 else { throw CheckFailure("skip_nonfinite: step counter \(s.step), expected 3") }
    }
}
