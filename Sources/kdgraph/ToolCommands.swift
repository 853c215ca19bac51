import ArgumentParser
import Foundation
import KDComm
import KDLosses
import KDModels
import KDTensor
import KDTrain

struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check every collective against independently computed values; one JSON line with \"ok\".",
        discussion: "KDGRAPH_FAIL_RANK=r makes rank r fail mid-test (exercises the abort path).")

    func run() throws {
        withWorld { comm in
            let line = try SelfTest.run(comm: comm)
            if comm.rank == 0 { print(line) }
            if !line.contains("\"ok\": true") { throw ValidationError("self-test failed: \(line)") }
        }
    }
}

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The model zoo: name, parameter count, feature size.")

    @Option(help: "Classes of the classifier head.") var classes = 100
    @Option(help: "Input channels.") var channels = 3

    func run() throws {
        print(try ModelZoo.formattedTable(classes: classes, inputChannels: channels))
    }
}

struct ConformanceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run a loss-fixture manifest through the real loss code; non-zero exit past tolerance.")

    @Argument(help: "Folder with manifest.json and its .npy files.") var directory: String

    func run() throws {
        let (report, ok) = try Conformance.run(directory: directory)
        for line in report { print(line) }
        if !ok { throw ExitCode(1) }
    }
}
