import ArgumentParser
import Foundation
import KDCore
import KDData
import KDLosses
import KDModels
import KDTools
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

struct ExportData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-data",
        abstract: "Write the embedded synthetic images as an npy folder (a first data.path to train on).",
        discussion: "Writes train_images.npy, train_labels.npy, test_images.npy and test_labels.npy (uint8 NHWC, "
            + "int64) into --out; refuses a folder that already holds them. Then: kdgraph train --config "
            + "configs/quickstart-teacher.yaml --set data.source=npy --set data.path=OUT.")

    @Option(help: "The folder to create.") var out: String
    @Option(help: "Training images.") var train = 2048
    @Option(help: "Test images.") var test = 512
    @Option(help: "Classes.") var classes = 10
    @Option(help: "Image side in pixels.") var size = 32
    @Option(help: "Seed of the generator.") var seed = 0

    func validate() throws {
        // The generator's own limits (SyntheticDataset), named per option while the command line is parsed.
        let classRange = SyntheticDataset.classRange, sides = SyntheticDataset.minimumSide...512
        if train < 1 { throw ValidationError("--train must be ≥ 1, got \(train)") }
        if test < 1 { throw ValidationError("--test must be ≥ 1, got \(test)") }
        if !classRange.contains(classes) {
            throw ValidationError("--classes must be in \(classRange.lowerBound)…\(classRange.upperBound), "
                                  + "got \(classes)")
        }
        if !sides.contains(size) {
            throw ValidationError("--size must be in \(sides.lowerBound)…\(sides.upperBound), got \(size)")
        }
        if seed < 0 { throw ValidationError("--seed must be ≥ 0, got \(seed)") }
    }

    func run() throws {
        try SyntheticExport.write(folder: out, train: train, test: test, classes: classes, size: size,
                                  seed: UInt64(seed))
        print("wrote \(train) training and \(test) test images (\(size)×\(size)×3, \(classes) classes) to \(out)")
    }
}

struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The model zoo: name, parameter count, feature size.")

    @Option(help: "Classes of the classifier head.") var classes = 100
    @Option(help: "Input channels.") var channels = 3
    @Option(help: "Write this model, freshly initialised, as a safetensors checkpoint (with --out).") var save: String?
    @Option(help: "Where --save writes (a new file).") var out: String?
    @Option(help: "Initialisation seed for --save.") var seed = 0

    func validate() throws {
        if classes < 1 { throw ValidationError("--classes must be ≥ 1, got \(classes)") }
        if channels < 1 { throw ValidationError("--channels must be ≥ 1, got \(channels)") }
        if seed < 0 { throw ValidationError("--seed must be ≥ 0, got \(seed)") }
        if save != nil && out == nil { throw ValidationError("--save needs --out PATH") }
        if save == nil && out != nil { throw ValidationError("--out is where --save writes; give --save MODEL too") }
        // A fresh initialisation written over trained weights would lose them: a new file only.
        if let out, FileManager.default.fileExists(atPath: out) {
            throw ValidationError("--out \(out) already exists; models --save writes a new file (choose another "
                                  + "--out or delete it)")
        }
    }

    func run() throws {
        if let save, let out {
            let m = try ModelZoo.make(name: save, classes: classes, inputChannels: channels, seed: UInt64(seed))
            let dir = (out as NSString).deletingLastPathComponent
            if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
            try Checkpoint.save(path: out, model: m,
                                metadata: ["kdgraph.model": save, "kdgraph.init_seed": String(seed)])
            print("wrote \(out): \(save), \(m.parameterCount) parameters, \(classes) classes, "
                  + "initialised from seed \(seed)")
            return
        }
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
