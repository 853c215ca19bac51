// swift-tools-version:6.0
//
// KDGraph: distributed relational knowledge distillation over MPI.
// The targets follow one training step's data flow:
//   KDData (shards, sampler, views) → KDModels (teacher, student) → KDComm (all-gather)
//   → KDLosses (global graphs) → KDTensor (backward) → KDComm (all-reduce) → KDModels (optimizer)
// with KDTrain tying them into the training loop and `kdgraph` the command line.
import PackageDescription

/// The instruction set of the SIMD kernels (docs/ops.md, "Instruction set"). On x86-64 they are compiled for
/// AVX2 + FMA (`-target-cpu haswell`: Intel since 2013, every AMD Zen), where a `SIMD8<Float>` operation is one
/// 256-bit instruction instead of two SSE halves; `kdgraph` checks the CPU at start-up and says so when it
/// lacks them. `KDGRAPH_PORTABLE=1 swift build …` builds for baseline x86-64 instead.
#if arch(x86_64)
let targetCPU: [String] = Context.environment["KDGRAPH_PORTABLE"] == "1" ? [] : ["-target-cpu", "haswell"]
#else
let targetCPU: [String] = []
#endif

/// Hot numeric modules are built without overflow/bounds checks in release builds.
let fastMath: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"] + targetCPU, .when(configuration: .release)),
]
let v5: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "KDGraph",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kdgraph", targets: ["kdgraph"]),
        .library(name: "KDTrain", targets: ["KDTrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // C interop: OpenMPI and OpenBLAS (CBLAS + LAPACK prototypes).
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),

        // Numerical core: tensors, tape autodiff, ops on OpenBLAS.
        .target(name: "KDTensor", dependencies: ["CBLAS"], swiftSettings: v5 + fastMath),
        // Communication: MPI communicator, collectives, gradient buckets, differentiable all-gather.
        .target(name: "KDComm", dependencies: ["CMPI", "KDTensor"], swiftSettings: v5 + fastMath),
        // File formats users exchange with NumPy and PyTorch: .npy and safetensors.
        .target(name: "KDFormats", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: v5 + fastMath),
        // Data: sources, world-size-invariant sampler, augmented views, prefetch.
        .target(name: "KDData", dependencies: ["KDFormats", "KDTensor"], swiftSettings: v5 + fastMath),
        // Models: layers, model zoo, SyncBN, optimizers, checkpoints.
        .target(name: "KDModels", dependencies: ["KDTensor", "KDComm", "KDFormats"],
                swiftSettings: v5 + fastMath),
        // Losses: KD, RKD, PRG, VRM, spectral over the gathered global batch.
        .target(name: "KDLosses", dependencies: ["KDTensor", "KDComm", "KDFormats", "KDData"],
                swiftSettings: v5 + fastMath),
        // Training: config, the step, the run loop, metrics, checkpoint/resume.
        .target(name: "KDTrain", dependencies: [
            "KDTensor", "KDComm", "KDFormats", "KDData", "KDModels", "KDLosses",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v5 + fastMath),
        // What measures or checks training, kept out of the training libraries: the step, op and
        // communication benchmarks, the loss projection, scaling reports, the loss conformance harness,
        // the communication self-test (`kdgraph selftest`, `kdgraph-mpi-checks --selftest`).
        .target(name: "KDTools", dependencies: ["KDTrain", "KDTensor", "KDComm", "KDData", "KDLosses", "KDFormats"],
                swiftSettings: v5 + fastMath),
        .executableTarget(name: "kdgraph", dependencies: [
            "KDTrain", "KDTools", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: v5 + (targetCPU.isEmpty ? [] : [.define("KDGRAPH_HASWELL")])),
        // Multi-rank checks run under a real `mpirun -np 2/4` by Tests/mpi/run.sh.
        .executableTarget(name: "kdgraph-mpi-checks", dependencies: [
            "KDTrain", "KDTools", "KDComm", "KDTensor", "KDModels", "KDLosses", "KDData", "KDLossTesting",
        ], swiftSettings: v5 + fastMath),

        // Tests only: `InProcessWorld`, N ranks as threads of one process (docs/communication.md).
        .target(name: "KDTestSupport", dependencies: ["KDComm", "KDTensor"], swiftSettings: v5),
        // Tests only: the loss contract every registered loss is checked against (docs/losses.md).
        .target(name: "KDLossTesting", dependencies: ["KDLosses", "KDTensor", "KDComm", "KDData", "KDTestSupport"],
                swiftSettings: v5),

        .testTarget(name: "KDTensorTests", dependencies: ["KDTensor"], swiftSettings: v5),
        .testTarget(name: "KDCommTests", dependencies: ["KDComm", "KDTensor", "KDTestSupport"], swiftSettings: v5),
        .testTarget(name: "KDFormatsTests", dependencies: ["KDFormats"], swiftSettings: v5),
        .testTarget(name: "KDDataTests", dependencies: ["KDData", "KDFormats", "KDTensor"], swiftSettings: v5),
        .testTarget(name: "KDModelsTests",
                    dependencies: ["KDModels", "KDTensor", "KDFormats", "KDComm", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "KDLossesTests",
                    dependencies: ["KDLosses", "KDTensor", "KDFormats", "KDComm", "KDData", "KDLossTesting",
                                   "KDTestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "KDTrainTests", dependencies: ["KDTrain", "KDComm", "KDData", "KDLosses", "KDModels",
                                                         "KDFormats", "KDTestSupport", "KDLossTesting"],
                    swiftSettings: v5),
        .testTarget(name: "KDToolsTests", dependencies: ["KDTools", "KDTrain", "KDData", "KDLosses", "KDTensor",
                                                         "KDComm", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "kdgraphTests", dependencies: ["kdgraph"],
                    swiftSettings: v5 + (targetCPU.isEmpty ? [] : [.define("KDGRAPH_HASWELL")])),
    ]
)
