import Foundation

/// The CPU's feature flags as Linux reports them (the first `flags` line of `/proc/cpuinfo`; none where there
/// is no such file), and the AVX-512 kernels' dispatch on them (docs/ops.md, "Instruction set"). `kdgraph`'s
/// start-up check of the build's instruction set parses the same line itself: it must run before any code of
/// this module, which is compiled for AVX2.
public enum CPUFeatures {
    /// The flags of a `/proc/cpuinfo` text.
    public static func flags(cpuinfo: String?) -> Set<String> {
        guard let cpuinfo,
              let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }).map(String.init))
    }

    /// This machine's flags.
    public static let current: Set<String> =
        flags(cpuinfo: try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))

    /// What the AVX-512 kernels (module KDKernels512, `-target-cpu skylake-avx512`) need.
    public static let avx512Flags = ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]

    /// Whether this build has AVX-512 kernels and this CPU runs them, unless the environment says
    /// `KDGRAPH_AVX512=0` (to compare with the AVX2 kernels, which give the same bits).
    public static let hasAVX512: Bool = {
        #if KDGRAPH_AVX512
        return avx512Flags.allSatisfy(current.contains) && ProcessInfo.processInfo.environment["KDGRAPH_AVX512"] != "0"
        #else
        return false
        #endif
    }()
}
