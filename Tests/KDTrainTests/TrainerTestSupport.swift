import Foundation
import KDCore
import KDData
import KDModels
import KDTestSupport
@testable import KDTrain

/// A fresh temporary folder holding `teacher.safetensors`: a random-weight resnet8 (5 classes, 16×16×3),
/// the teacher of the in-process trainer tests. The caller removes the folder (`remove()`).
func makeFolderWithTeacher(_ prefix: String) throws -> TemporaryDirectory {
    let dir = try TemporaryDirectory(prefix: prefix)
    do {
        let teacher = try ModelZoo.make(name: "resnet8", classes: 5, inputChannels: 3, imageSize: [16, 16], seed: 99)
        try Checkpoint.save(path: dir.file("teacher.safetensors"), model: teacher, metadata: ["purpose": "test"],
                            rank: 0)
    } catch {
        dir.remove()
        throw error
    }
    return dir
}

/// A fresh `Trainer` from `cfg` on `comm`, run for `steps` steps from the start; `each(trainer, record,
/// step index)` after every step. Returns the trainer.
@discardableResult
func runTrainer(_ cfg: KDConfig, comm: Communicator, steps: Int,
                each: (Trainer, StepRecord, Int) throws -> Void) throws -> Trainer {
    let t = try Trainer(config: cfg, comm: comm)
    let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: steps, depth: 1)
    defer { stream.shutdown() }
    for s in 0..<steps {
        guard let b = try stream.next() else { throw CheckFailure("batch stream ended at step \(s)") }
        try each(t, try t.step(b), s)
    }
    return t
}
