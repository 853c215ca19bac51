import KDComm

/// Multi-rank checks of the Loss layer (filled by its owner).
enum LossChecks {
    static let all: [MultiRankCheck] = []
}
