import KDComm

/// Multi-rank checks of the Model layer (filled by its owner).
enum ModelChecks {
    static let all: [MultiRankCheck] = []
}
