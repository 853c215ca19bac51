import ArgumentParser
import Foundation
import KDComm
import KDTrain

@main
struct KDGraphCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kdgraph",
        abstract: "Distributed relational knowledge distillation over MPI.",
        discussion: """
        Run under mpirun (or srun) for several ranks; without a launcher it is a world of one. \
        Documentation: docs/ in the source tree.
        """,
        subcommands: [Train.self, Eval.self, Predict.self, SelfTestCommand.self, Models.self, ConformanceCommand.self,
                      Bench.self, Scaling.self, TeacherCacheCommand.self, ExportViews.self, ExportData.self])

    /// Checks the CPU before any kernel runs (this file is compiled for baseline x86-64), then the
    /// `KDGRAPH_…` environment variables (a value it cannot read: an error on every rank; a name nothing
    /// reads: a warning, from the launcher's rank 0), then parses.
    static func main() {
        if let message = InstructionSet.unsupportedMessage() {
            FileHandle.standardError.write(Data((message + "\n").utf8))
            Foundation.exit(1)
        }
        let environment = ProcessInfo.processInfo.environment
        let errors = EnvironmentVariables.errors(environment)
        guard errors.isEmpty else {
            for e in errors { FileHandle.standardError.write(Data("kdgraph: \(e)\n".utf8)) }
            Foundation.exit(1)
        }
        // Before MPI starts, the launcher's rank (mpirun, MPICH/Hydra, srun); none: a world of one.
        let rank = ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"].lazy
            .compactMap { environment[$0].flatMap(Int.init) }.first ?? 0
        if rank == 0 {
            for w in EnvironmentVariables.warnings(environment) {
                FileHandle.standardError.write(Data("kdgraph: warning: \(w)\n".utf8))
            }
        }
        main(nil)
    }
}

/// Options shared by commands that read a config.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The YAML configuration file.")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config key: --set data.global_batch=256 (repeatable).")
    var overrides: [String] = []

    func load() throws -> KDConfig { try KDConfig.load(path: config, overrides: overrides) }

    /// Loads the config and runs `body` in the MPI world with its BLAS threads. A config that cannot
    /// be loaded fails the same way on every rank (every rank reads the same file): the job aborts at once.
    func withConfiguredWorld(_ body: (KDConfig, MPICommunicator) throws -> Void) {
        let config: KDConfig
        do { config = try load() } catch {
            withWorld { _ in throw error }
            return
        }
        withWorld(blasThreads: config.runtime.blasThreads) { comm in
            if comm.rank == 0 {
                for note in config.overrideNotes { Runtime.logger.info("\(note)") }
                for note in config.unusedKeyNotes { Runtime.logger.warning("\(config.file): \(note)") }
            }
            try body(config, comm)
        }
    }
}

/// Initialises MPI and runs `body` so that any error on any rank ends the whole job with
/// `rank R: message` and a non-zero exit (MPI_Abort), never a hang.
func withWorld(blasThreads: Int = 1, _ body: (MPICommunicator) throws -> Void) {
    let comm: MPICommunicator
    do { comm = try Runtime.start(blasThreads: blasThreads) } catch {
        fputs("kdgraph: cannot initialise MPI: \(error)\n", stderr)
        exit(1)
    }
    runOrAbort(comm) { try body(comm) }
}

