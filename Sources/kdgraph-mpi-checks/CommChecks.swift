import KDComm

/// Multi-rank checks of the Comm layer (filled by its owner).
enum CommChecks {
    static let all: [MultiRankCheck] = []
}
