// swift-tools-version:6.0
//
// KDGraph: distributed relational knowledge distillation over MPI.
// The targets follow one training step's data flow:
//   KDData (shards, sampler, views) → KDModels (teacher, student) → KDComm (all-gather)
//   → KDLosses (global graphs) → KDTensor (backward) → KDComm (all-reduce) → KDModels (optimizer)
// with KDTrain tying them into the training loop and `kdgraph` the command line. As in swift-nio
// (NIOCore / NIOPosix / NIOEmbedded), the communication seam is split from its implementations:
// KDCore holds the `Communicator` protocol and `BatchPlan` and links no MPI; KDComm is the MPI
// implementation; KDTestSupport the in-process one. KDData, KDModels and KDLosses see only KDCore.
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

/// The AVX-512 kernels (KDKernels512) are compiled for AVX-512 F/CD/BW/DQ/VL (`-target-cpu skylake-avx512`: Intel
/// since Skylake-SP, AMD since Zen 4) and called only where the CPU has them (KDTensor's `CPUFeatures`), so the
/// binary still runs on AVX2 machines. Not in a portable build, nor off x86-64.
#if arch(x86_64)
let avx512CPU: [String] = targetCPU.isEmpty ? [] : ["-target-cpu", "skylake-avx512"]
#else
let avx512CPU: [String] = []
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

        // The seam every library codes against, without MPI: the `Communicator` protocol (its scalar
        // types, reduce ops, errors, array conveniences), the exact fixed-point all-reduce `ExactSum`,
        // and `BatchPlan`, the geometry of one step's global batch.
        .target(name: "KDCore", swiftSettings: v5 + fastMath),
        // The AVX-512 kernels (the GEMMs' register blocks, the F(4×4) transforms), compiled for AVX-512 alone.
        .target(name: "KDKernels512", swiftSettings: v5 + [
            .unsafeFlags(["-Ounchecked", "-wmo"] + (avx512CPU.isEmpty ? targetCPU : avx512CPU),
                         .when(configuration: .release)),
        ]),
        // Numerical core: tensors, tape autodiff, ops on OpenBLAS.
        .target(name: "KDTensor", dependencies: ["CBLAS", "KDKernels512"],
                swiftSettings: v5 + fastMath + (avx512CPU.isEmpty ? [] : [.define("KDGRAPH_AVX512")])),
        // Communication over MPI: `MPICommunicator`, the watchdog and stall probe, gradient buckets,
        // exact gradients, the differentiable all-gather.
        .target(name: "KDComm", dependencies: ["CMPI", "KDCore", "KDTensor"], swiftSettings: v5 + fastMath),
        // File formats users exchange with NumPy and PyTorch: .npy and safetensors.
        .target(name: "KDFormats", dependencies: [.product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: v5 + fastMath),
        // Data: sources, world-size-invariant sampler, augmented views, prefetch.
        .target(name: "KDData", dependencies: ["KDCore", "KDFormats", "KDTensor"], swiftSettings: v5 + fastMath),
        // Models: layers, model zoo, SyncBN, optimizers, checkpoints.
        .target(name: "KDModels", dependencies: ["KDCore", "KDTensor", "KDFormats"],
                swiftSettings: v5 + fastMath),
        // Losses: KD, RKD, PRG, VRM, spectral over the gathered global batch.
        .target(name: "KDLosses", dependencies: ["KDCore", "KDTensor", "KDFormats"],
                swiftSettings: v5 + fastMath),
        // Training: config, the step, the run loop, metrics, checkpoint/resume.
        .target(name: "KDTrain", dependencies: [
            "KDCore", "KDTensor", "KDComm", "KDFormats", "KDData", "KDModels", "KDLosses",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v5 + fastMath),
        // What measures or checks training, kept out of the training libraries: the step, op and
        // communication benchmarks, the loss projection, scaling reports,
        // the communication self-test (`kdgraph selftest`, `kdgraph-mpi-checks --selftest`).
        .target(name: "KDTools",
                dependencies: ["KDTrain", "KDCore", "KDTensor", "KDComm", "KDData", "KDLosses", "KDFormats",
                               "KDModels"],
                swiftSettings: v5 + fastMath),
        .executableTarget(name: "kdgraph", dependencies: [
            "KDTrain", "KDTools", "KDCore", "KDComm", "KDData", "KDFormats", "KDModels", "KDLosses", "KDTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: v5 + (targetCPU.isEmpty ? [] : [.define("KDGRAPH_HASWELL")])),
        // Multi-rank checks run under a real `mpirun -np 2/4` by Tests/mpi/run.sh.
        .executableTarget(name: "kdgraph-mpi-checks", dependencies: [
            "KDTrain", "KDTools", "KDCore", "KDComm", "KDTensor", "KDModels", "KDLosses", "KDData", "KDLossTesting",
            "KDTestSupport",
        ], swiftSettings: v5 + fastMath),

        // Tests only: `InProcessWorld`, N ranks as threads of one process (docs/communication.md); no MPI.
        // `TemporaryDirectory`, the one way tests make (and remove) a temporary folder.
        .target(name: "KDTestSupport", dependencies: ["KDCore", "KDTensor"], swiftSettings: v5),
        // Tests only: the loss contract every registered loss is checked against (docs/losses.md).
        .target(name: "KDLossTesting",
                dependencies: ["KDLosses", "KDTensor", "KDCore", "KDComm", "KDTestSupport"], swiftSettings: v5),

        .testTarget(name: "KDTensorTests", dependencies: ["KDTensor"], swiftSettings: v5),
        .testTarget(name: "KDCommTests", dependencies: ["KDCore", "KDComm", "KDTensor", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "KDFormatsTests", dependencies: ["KDFormats", "KDTestSupport"], swiftSettings: v5),
        .testTarget(name: "KDDataTests", dependencies: ["KDCore", "KDData", "KDFormats", "KDTensor", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "KDModelsTests",
                    dependencies: ["KDModels", "KDTensor", "KDFormats", "KDCore", "KDComm", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "KDLossesTests",
                    dependencies: ["KDLosses", "KDTensor", "KDFormats", "KDCore", "KDLossTesting", "KDTestSupport"],
                    resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "KDTrainTests", dependencies: ["KDTrain", "KDCore", "KDData", "KDLosses", "KDModels",
                                                         "KDFormats", "KDTensor", "KDTestSupport", "KDLossTesting"],
                    swiftSettings: v5),
        .testTarget(name: "KDToolsTests", dependencies: ["KDTools", "KDTrain", "KDData", "KDLosses", "KDTensor",
                                                         "KDCore", "KDComm", "KDTestSupport"],
                    swiftSettings: v5),
        .testTarget(name: "kdgraphTests", dependencies: [
            "kdgraph", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
                    swiftSettings: v5 + (targetCPU.isEmpty ? [] : [.define("KDGRAPH_HASWELL")])),
    ]
)
