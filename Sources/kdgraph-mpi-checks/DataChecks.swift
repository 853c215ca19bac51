import KDComm

/// Multi-rank checks of the Data layer (filled by its owner).
enum DataChecks {
    static let all: [MultiRankCheck] = []
}
