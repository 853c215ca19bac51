import KDComm

/// Multi-rank checks of the Train layer (filled by its owner).
enum TrainChecks {
    static let all: [MultiRankCheck] = []
}
