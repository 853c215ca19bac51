import Foundation
import KDTensor

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
    static func unsupportedMessage(cpuinfo: String? = try? String(contentsOfFile: "/proc/cpuinfo",
                                                                  encoding: .utf8)) -> String? {
        let flags = CPUFeatures.flags(cpuinfo: cpuinfo)
        guard !required.isEmpty, !flags.isEmpty else { return nil }
        let missing = required.filter { !flags.contains($0) }
        guard !missing.isEmpty else { return nil }
        return "kdgraph: this build's kernels need AVX2 and FMA (x86-64 Haswell or later, every AMD Zen); this CPU "
            + "lacks \(missing.joined(separator: ", ")). Rebuild for it with: KDGRAPH_PORTABLE=1 swift build -c release"
    }
}
