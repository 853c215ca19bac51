import Foundation
import KDComm
import KDCore
import KDLosses
import KDLossTesting

/// Multi-rank checks of the losses' share contract, generated from the loss registry: every
/// configuration `LossContract.configurations` derives from each registered descriptor (its defaults,
/// then each parameter off its default) runs `LossContract.multiRankShares` under the real
/// communicator — a linear student on each rank's rows, gathered, each rank's share with the
/// communicator, backward, parameter gradients all-reduced — over uneven shards, an empty one and two
/// views; and each kind's fixture cases (`LossContract.multiRankFixtures`, the manifests under
/// `$KDGRAPH_LOSS_FIXTURES`, default `Tests/KDLossesTests/Fixtures` and its sub-folders, from the
/// repository root as Tests/mpi/run.sh runs it) against the float64 reference, each rank its share with
/// the communicator. A new loss is checked here without a line in this file. Besides: the objective of every
/// registered kind at once, the iterative spectral solver's convergence on gathered products, and the
/// contract's own test (a share that forgets its all-reduce must fail it).
enum LossChecks {
    static var all: [MultiRankCheck] {
        var checks: [MultiRankCheck] = []
        for d in LossRegistry.all {
            for c in LossContract.configurations(d) {
                checks.append(MultiRankCheck("losses.\(c.label.replacingOccurrences(of: " ", with: "."))") {
                    try LossContract.multiRankShares($0, c)
                })
            }
            if !d.fixtures.isEmpty {
                checks.append(MultiRankCheck("losses.\(d.kind).fixtures") {
                    try LossContract.multiRankFixtures($0, d, directories: try fixtureDirectories())
                })
            }
        }
        checks.append(MultiRankCheck("losses.objective_every_kind_two_views") { comm in
            let objective = LossObjective(terms: try LossRegistry.all.map { try LossRegistry.makeDefault($0.kind) })
            try LossContract.multiRankShares(comm, objective, batch: 7, views: 2)
        })
        checks.append(MultiRankCheck("losses.spectral_iterative_converges") { comm in
            // 48 rows, block 10: Krylov cycles on gathered products; the dense fallback would hide wrong
            // products, so both solves (reference, share) must converge.
            let before = SpectralSolverStatistics.current
            let term = try LossRegistry.makeDefault("spectral")
            guard var spectral = term as? SpectralTerm else { throw LossContract.Failure("spectral is \(term)") }
            spectral.k = 3
            spectral.solver = .iterative
            try LossContract.multiRankShares(comm, LossObjective(terms: [spectral]), batch: 48, views: 1)
            let after = SpectralSolverStatistics.current
            guard after.fallbacks == before.fallbacks, after.iterative - before.iterative == 2 else {
                throw LossContract.Failure("iterative solves \(after.iterative - before.iterative), fallbacks "
                                           + "\(after.fallbacks - before.fallbacks) (expected 2 and 0)")
            }
        })
        checks.append(MultiRankCheck("losses.contract_catches_a_forgotten_all_reduce") { comm in
            let good = NormalisedDistanceTerm(kind: "normalised_distance", weight: 1, forgetsAllReduce: false)
            try LossContract.multiRankShares(comm, LossObjective(terms: [good]), batch: 7, views: 1)
            let broken = NormalisedDistanceTerm(kind: "normalised_distance", weight: 1, forgetsAllReduce: true)
            do {
                try LossContract.multiRankShares(comm, LossObjective(terms: [broken]), batch: 7, views: 1)
            } catch is LossContract.Failure {
                return    // caught, as it must be
            }
            if comm.size > 1 { throw LossContract.Failure("a share without its all-reduce passed the contract") }
        })
        return checks
    }

    /// The fixture manifests: `$KDGRAPH_LOSS_FIXTURES` (or the repository's bundled set) and every
    /// sub-folder of it holding a `manifest.json`.
    static func fixtureDirectories() throws -> [String] {
        let root = ProcessInfo.processInfo.environment["KDGRAPH_LOSS_FIXTURES"] ?? "Tests/KDLossesTests/Fixtures"
        let fm = FileManager.default
        guard fm.fileExists(atPath: root + "/manifest.json") else {
            throw LossContract.Failure("no manifest.json in \(root) (set KDGRAPH_LOSS_FIXTURES)")
        }
        let subfolders = (try fm.contentsOfDirectory(atPath: root)).sorted()
            .filter { fm.fileExists(atPath: root + "/" + $0 + "/manifest.json") }
        return [root] + subfolders.map { root + "/" + $0 }
    }
}
