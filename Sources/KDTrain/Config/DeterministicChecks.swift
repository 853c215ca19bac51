extension KDConfig {
    /// What `train.deterministic: true` cannot honour is refused here, naming the key (docs/training.md,
    /// "Bit-identical training at any world size"); `student.sync_bn: false` is refused by the trainer,
    /// which knows whether the student has BatchNorm layers at all.
    func checkDeterministic() throws {
        if data.globalBatch % train.blockSize != 0 {
            throw ConfigError(file: file, key: "train.block_size",
                              message: "data.global_batch \(data.globalBatch) must be a multiple of the block size "
                                  + "\(train.blockSize) (train.deterministic shares whole blocks between ranks)")
        }
        if comm.overlap {
            throw ConfigError(file: file, key: "comm.overlap",
                              message: "true cannot apply with train.deterministic: the exact gradient sum needs "
                                  + "every block's gradient first (set comm.overlap: false)")
        }
    }
}
