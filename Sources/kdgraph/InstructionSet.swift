import Foundation

/// The kernels' instruction set (Package.swift `targetCPU`, docs/ops.md "Instruction set"): on x86-64
/// they are built for AVX2 + FMA unless `KDGRAPH_PORTABLE=1`. A CPU without them would die of SIGILL in
/// the first kernel; this says why instead, and how to build for it.
enum InstructionSet {
    /// The CPU flags the build needs.
    static let required: [String] = {
        #if KDGRAPH_HASWELL
        return ["avx2", "fma", "bmi2", "f16c"]
        #else
        return []
        #endif
    }()

    /// nil when the CPU has every required flag (or there is no `/proc/cpuinfo` to read).
    ///
    /// The flags are parsed here, not by KDTensor's `CPUFeatures.flags`: this module is compiled for baseline
    /// x86-64, KDTensor for AVX2, and nothing of KDTensor may run before this check has passed.
    static func unsupportedMessage(cpuinfo: String? = try? String(contentsOfFile: "/proc/cpuinfo",
                                                                  encoding: .utf8)) -> String? {
        guard !required.isEmpty, let cpuinfo,
              let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
        let missing = required.filter { !flags.contains($0) }
        guard !missing.isEmpty else { return nil }
        return "kdgraph: this build's kernels need AVX2 and FMA (x86-64 Haswell or later, every AMD Zen); this CPU "
            + "lacks \(missing.joined(separator: ", ")). Rebuild for it with: KDGRAPH_PORTABLE=1 swift build -c release"
    }
}
