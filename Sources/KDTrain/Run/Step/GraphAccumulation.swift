import KDData
import KDModels
import KDTensor

/// Graph accumulation (`train.micro_batch`, docs/training.md "Graphs larger than memory"; GradCache, Gao
/// et al. 2021): the relational graph spans the whole global batch while the student's activations are
/// only ever held for `samplesPerChunk` samples of this rank.
///
/// 1. **Pass 1**, chunk by chunk without a tape: the teacher's outputs and the student's (features, logits,
///    embedding). Only those rows stay; block BatchNorm leaves its running statistics alone.
/// 2. **The graph**, once over the global batch as in one pass: the gathers, this rank's share of the loss,
///    and its backward, which ends at the kept outputs (leaves): the gradient of the loss with respect to
///    this rank's rows of each.
/// 3. **Pass 2**, chunk by chunk on the tape: the student's forward again, and its backward seeded with the
///    chunk's rows of those gradients. Parameter gradients accumulate over the chunks: in deterministic
///    mode each chunk's per-block partials in their blocks' place (`SampleBlocks.placing`; the exact sum
///    does not depend on their order), otherwise in `grad`.
///    Block BatchNorm collects its blocks' running statistics and applies them once at the end.
///
/// Exact to the one-pass step in deterministic mode: every op is row-invariant over sample blocks, a
/// chunk holds whole blocks, the seeds arrive in the order the gathers' backward delivers them (before
/// the head's and the classifier's contributions to the features), and the running statistics see the
/// same blocks. Needs `student.batch_norm: block` (or no BatchNorm): sync and local BatchNorm normalise over
/// more rows than a chunk holds. Costs one more student forward (pass 1) per step.
struct MicroBatchSchedule: PassSchedule {
    let samplesPerChunk: Int
    /// Test hook: replaces the images of pass 2's chunks (the test that shows a differently augmented
    /// second pass breaks exactness). Nil in training.
    var secondPassImages: ((Tensor) -> Tensor)? = nil

    func run(_ batch: Batch, step: Int, stages: StepStages, timer: inout PhaseTimer) throws -> StepPass {
        let chunks = Swift.stride(from: 0, to: batch.count, by: samplesPerChunk).map {
            $0..<Swift.min(batch.count, $0 + samplesPerChunk)
        }
        // Pass 1: outputs only.
        var teacherParts: [TeacherSide.Output] = [], studentParts: [StudentOutput] = []
        stages.setRunningStatistics(.skip)
        defer { stages.setRunningStatistics(.now) }
        for chunk in chunks {
            let part = try batch.samples(chunk)
            if let t = try stages.teacherOutputs(part) { teacherParts.append(t) }
            timer.lap(.teacher)
            studentParts.append(try withNoGrad { try stages.studentForward(part) })
            timer.lap(.studentForward)
        }
        let teacher = try teacherParts.isEmpty ? nil : TeacherSide.Output(concatenating: teacherParts)
        let outputs = try StudentOutput(concatenating: studentParts)
        // The graph over the global batch; its backward stops at this rank's outputs.
        let (inputs, gathers) = try stages.gatherLossInputs(batch, student: outputs, teacher: teacher, step: step)
        let share = try stages.lossShare(inputs)
        Tape.backward(share.value)
        timer.lap(.gatherLoss)
        // Pass 2: each chunk on the tape, seeded with its rows of the outputs' gradients; in deterministic
        // mode each chunk's parameter partials go to their blocks' place (`SampleBlocks.placing`).
        stages.setRunningStatistics(.collect)
        let rowsPerSample = batch.views, rowsPerBlock = SampleBlocks.rowsPerBlock
        let blocks = rowsPerBlock.map { (batch.count * rowsPerSample + $0 - 1) / $0 } ?? 0
        for (k, chunk) in chunks.enumerated() {
            var part = try batch.samples(chunk)
            if let replace = secondPassImages { part = part.replacingImages(replace(part.images)) }
            let rows = (chunk.lowerBound * rowsPerSample)..<(chunk.upperBound * rowsPerSample)
            func forwardAndBackward() throws {
                let again = try stages.studentForward(part)
                timer.lap(.studentForward)
                stages.backward(seeding: again, with: try outputs.gradientRows(rows), last: k == chunks.count - 1)
            }
            if let rowsPerBlock {
                try SampleBlocks.placing(first: rows.lowerBound / rowsPerBlock, of: blocks, forwardAndBackward)
            } else {
                try forwardAndBackward()
            }
            timer.lap(.backward)
        }
        try stages.commitRunningStatistics()
        timer.lap(.backward)
        return StepPass(share: share, teacher: teacher, gathers: gathers)
    }
}

extension StudentOutput {
    /// The chunks' outputs of pass 1 as one tensor each, leaves that require their gradient.
    init(concatenating parts: [StudentOutput]) throws {
        func joined(_ xs: [Tensor]) throws -> Tensor {
            let t = try rowsJoined(xs)
            t.requiresGrad = true
            return t
        }
        features = try joined(parts.map(\.features))
        logits = try joined(parts.map(\.logits))
        embedding = try parts.first?.embedding == nil ? nil : joined(parts.compactMap(\.embedding))
    }

    /// Rows `rows` of each output's gradient (nil where the loss did not reach that output).
    func gradientRows(_ rows: Range<Int>) throws -> StudentOutputGradients {
        func part(_ t: Tensor?) throws -> Tensor? { try t?.grad.map { try slice($0, axis: 0, range: rows) } }
        return StudentOutputGradients(features: try part(features), logits: try part(logits),
                                      embedding: try part(embedding))
    }
}

/// The gradients pass 2 seeds the student's outputs with (nil: none reached that output).
struct StudentOutputGradients {
    var features: Tensor?
    var logits: Tensor?
    var embedding: Tensor?
}

extension TeacherSide.Output {
    /// The chunks' teacher outputs of pass 1, rows in order.
    init(concatenating parts: [TeacherSide.Output]) throws {
        self.init(embedding: try rowsJoined(parts.map(\.embedding)),
                  logits: try parts.first?.logits == nil ? nil : rowsJoined(parts.compactMap(\.logits)))
    }
}

/// The chunks' rows of one tensor, in order, off the tape (one chunk: that tensor itself).
private func rowsJoined(_ xs: [Tensor]) throws -> Tensor {
    try withNoGrad { xs.count == 1 ? xs[0] : try concat(xs, axis: 0) }
}
