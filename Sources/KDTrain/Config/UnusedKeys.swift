import Foundation
import KDLosses
import KDModels

/// Keys given a value (other than their default) that this run does not read: a supervised run's teacher and
/// loss list, a distillation run's teacher when no loss term reads it, the other teacher kind's keys, the crop
/// and flip of a run without augmentation, a file source's synthetic sizes, the optimizer settings of the other
/// optimizer, mlp's hidden widths for another model, a projection-head size no loss term reads, the virtual
/// view's augmentation with one view, views beyond those the loss terms read (`LossTerm.viewsRead`), the block
/// size where nothing is shared in blocks, and a distillation loss term of weight 0 beside one that is not
/// (computed, but not trained on: a term of weight 0 that is the only one, or a term whose parts all weigh 0,
/// is an error instead); and the environment's `KDGRAPH_COMM_TIMEOUT` where `comm.timeout_s` replaces it.
/// Such a value is not an error (a config is often edited by switching one key, `--set optim.kind=adamw`),
/// but it must not be dropped without a word: rank 0 logs each as a warning when the run starts
/// (docs/config.md). A key left at its default changes nothing either way, so a resolved `config.yaml` run
/// again is quiet.
extension KDConfig {
    public var unusedKeyNotes: [String] {
        let d = KDConfig()
        var notes: [String] = []
        func note(_ key: String, _ set: Bool, _ why: String) {
            if set { notes.append("\(key) is set but not used: \(why)") }
        }
        if mode == .supervised {
            note("teacher", teacher != d.teacher, "a supervised run has no teacher (mode: supervised)")
            note("loss", !loss.isEmpty, "a supervised run trains on cross-entropy with the labels (mode: supervised)")
        } else if !lossReadsTeacher {
            note("teacher", true, "no loss term reads the teacher's outputs (loss: "
                 + loss.map(\.kind).joined(separator: ", ") + "), so the teacher does not run (mode: supervised "
                 + "trains on the labels without one)")
        } else if teacher.kind == .network {
            let why = "a network teacher computes its own embeddings and logits (teacher.kind: network)"
            note("teacher.embeddings", teacher.embeddings != d.teacher.embeddings, why)
            note("teacher.prompts", teacher.prompts != d.teacher.prompts, why)
            note("teacher.clip_scale", teacher.clipScale != d.teacher.clipScale, why)
            note("teacher.hidden", ModelZoo.readsImages(teacher.model) && teacher.hidden != d.teacher.hidden,
                 "the hidden widths are mlp's (teacher.model: \(teacher.model))")
        } else {
            let why = "an embeddings teacher is its file, not a network (teacher.kind: embeddings)"
            note("teacher.model", teacher.model != d.teacher.model, why)
            note("teacher.checkpoint", teacher.checkpoint != d.teacher.checkpoint, why)
            note("teacher.hidden", teacher.hidden != d.teacher.hidden, why)
            note("teacher.clip_scale", teacher.prompts.isEmpty && teacher.clipScale != d.teacher.clipScale,
                 "it scales the prompt logits, and teacher.prompts is empty")
        }
        if mode == .distill && loss.contains(where: { $0.weight > 0 }) {
            for (i, entry) in loss.enumerated() where entry.weight == 0 {
                notes.append("loss.\(i).weight is 0: the \(entry.kind) term is computed every step but adds "
                             + "nothing to the loss the student trains on")
            }
        }
        let readsEmbedding = mode == .distill && loss.contains { $0.term.needs.contains(.studentEmbedding) }
        note("student.embed_dim", !readsEmbedding && student.embedDim != d.student.embedDim,
             "no loss term reads the student's embedding, the projection head's output (prg, spectral, rkd with "
             + "input: embedding)")
        note("student.hidden", ModelZoo.readsImages(student.model) && student.hidden != d.student.hidden,
             "the hidden widths are mlp's (student.model: \(student.model))")
        let viewsRead = loss.map(\.term.viewsRead)
        if mode == .distill, !viewsRead.contains(nil), let read = viewsRead.compactMap({ $0 }).max(),
           data.views > read {
            func views(_ a: Int, _ b: Int) -> String {
                a == b ? "view \(a)" : b == a + 1 ? "views \(a) and \(b)" : "views \(a)–\(b)"
            }
            notes.append("data.views is \(data.views), but the loss terms (" + loss.map(\.kind).joined(separator: ", ")
                         + ") read \(views(0, read - 1)) of each sample: \(views(read, data.views - 1)) "
                         + (read + 1 == data.views ? "is" : "are") + " computed every step and read by no term")
        }
        note("data.virtual_augment", data.views < 2 && data.virtualAugment != d.data.virtualAugment,
             "it augments the second (virtual) view, and data.views is \(data.views)")
        note("train.block_size", !sharesWholeBlocks && train.blockSize != d.train.blockSize,
             "blocks are shared only with train.deterministic: true or student.batch_norm: block")
        if !data.augment {
            let why = "data.augment: false turns training augmentation off"
            note("data.flip", data.flip != d.data.flip, why)
            note("data.crop_padding", data.cropPadding != d.data.cropPadding, why)
        }
        if data.source == .synthetic {
            note("data.path", data.path != d.data.path, "data.source: synthetic generates its images")
            note("data.eval_fraction", data.evalFraction != d.data.evalFraction,
                 "data.source: synthetic generates its evaluation split (data.eval_size)")
        } else {
            let why = "data.source: \(data.source.rawValue) takes its sample counts from the files"
            note("data.train_size", data.trainSize != d.data.trainSize, why)
            note("data.eval_size", data.evalSize != d.data.evalSize, why)
        }
        switch optim.kind {
        case .adamw:
            let why = "optim.kind: adamw has no momentum (it reads optim.betas and optim.eps)"
            note("optim.momentum", optim.momentum != d.optim.momentum, why)
            note("optim.nesterov", optim.nesterov != d.optim.nesterov, why)
        case .sgd:
            let why = "optim.betas and optim.eps are AdamW's (optim.kind: sgd reads optim.momentum)"
            note("optim.betas", optim.betas != d.optim.betas, why)
            note("optim.eps", optim.eps != d.optim.eps, why)
        }
        if optim.schedule != .step {
            let why = "optim.milestones and optim.gamma shape the step schedule only (optim.schedule: "
                + "\(optim.schedule.rawValue))"
            note("optim.milestones", optim.milestones != d.optim.milestones, why)
            note("optim.gamma", optim.gamma != d.optim.gamma, why)
        }
        if let env = ProcessInfo.processInfo.environment["KDGRAPH_COMM_TIMEOUT"], Double(env) != comm.timeoutS {
            notes.append("KDGRAPH_COMM_TIMEOUT=\(env) is set but not used: a run with a config times its collectives "
                         + "out after comm.timeout_s (\(comm.timeoutS) s)")
        }
        return notes
    }
}

extension KDConfig {
    /// Learning-rate settings that a run of `totalSteps` steps never reaches (known once the data gives the
    /// steps per epoch): milestones past the last step, a warm-up as long as the run. Rank 0 logs each as a
    /// warning when the run starts, as `unusedKeyNotes`.
    public func scheduleNotes(totalSteps: Int) -> [String] {
        var notes: [String] = []
        let late = optim.milestones.filter { $0 > totalSteps }
        if optim.schedule == .step && !late.isEmpty {
            notes.append("optim.milestones \(late) lie past the run's last step (\(totalSteps)): the learning rate "
                         + "never decays there")
        }
        if optim.warmupSteps >= totalSteps && optim.warmupSteps > 0 {
            notes.append("optim.warmup_steps \(optim.warmupSteps) ≥ the run's \(totalSteps) steps: the learning rate "
                         + "never reaches optim.lr")
        }
        return notes
    }
}

extension KDConfig {
    /// Settings a world of `ranks` ranks makes idle: a `train.micro_batch` that holds every rank's whole share
    /// of the global batch (one chunk per step: graph accumulation then only adds pass 1's forward). Rank 0
    /// logs each as a warning when the run starts, as `unusedKeyNotes`.
    public func worldNotes(ranks: Int) -> [String] {
        let b = data.globalBatch, block = sharesWholeBlocks ? samplesPerBlock : 1
        let largestShare = (b / block + ranks - 1) / ranks * block   // whole blocks when shared in blocks
        guard train.microBatch > 0, train.microBatch >= largestShare else { return [] }
        return ["train.micro_batch \(train.microBatch) holds each rank's whole share of the global batch (at most "
                + "\(largestShare) samples: data.global_batch \(b) on \(counted(ranks, "rank"))), so "
                + "every step is one chunk and graph accumulation only adds pass 1's forward; 0 turns it off"]
    }

    /// Keys the opened data does not read (known once the files are seen): `data.eval_fraction` when a file
    /// source has its own test split; the image keys (`data.image_size`, `data.mean`, `data.std`, and the
    /// augmentation's `data.flip`, `data.crop_padding`) when the folder holds feature rows (`featureRows`: the
    /// training file), and more than one `teacher.cache.rounds` of a network teacher on those rows (each round
    /// the same; an embeddings teacher's file may hold other outputs per round). Rank 0 logs each as a warning
    /// when the run starts, as `unusedKeyNotes`.
    public func dataNotes(evalIsHeldOut: Bool, evalName: String, featureRows: String? = nil) -> [String] {
        let d = KDConfig()
        var notes: [String] = []
        if data.source != .synthetic, !evalIsHeldOut, data.evalFraction != d.data.evalFraction {
            notes.append("data.eval_fraction is set but not used: the evaluation split is the test file \(evalName)")
        }
        if let featureRows {
            let why = "\(featureRows) holds feature rows, which are neither resized, normalised nor augmented"
            let keys = [("data.image_size", data.imageSize != nil), ("data.mean", data.mean != nil),
                        ("data.std", data.std != nil),
                        // With data.augment: false these two are named by `unusedKeyNotes` already.
                        ("data.flip", data.augment && data.flip != d.data.flip),
                        ("data.crop_padding", data.augment && data.cropPadding != d.data.cropPadding)]
            for (key, set) in keys where set { notes.append("\(key) is set but not used: \(why)") }
            if mode == .distill && teacher.kind == .network && teacher.cache.rounds > 1 {
                notes.append("teacher.cache.rounds is \(teacher.cache.rounds), but rounds of feature rows are all "
                             + "the same rows (\(featureRows) is not augmented): 1 round holds every teacher output")
            }
        }
        return notes
    }
}
