/// The `KDGRAPH_…` environment variables (docs/launch.md, "Environment variables that matter"). Those `kdgraph`
/// reads are checked when it starts, on every rank: a value it cannot read (`KDGRAPH_AVX512=no`,
/// `KDGRAPH_COMM_TIMEOUT=5m`) was taken as unset before, so the kernels or the timeout were not what the user
/// asked for, without a word; it is now an error naming the variable and what it takes. A `KDGRAPH_…` name
/// that nothing of the project reads (a misspelling: `KDGRAPH_COMM_TIMOUT`) is named in a warning.
public enum EnvironmentVariables {
    /// A variable `kdgraph` reads, and the values it takes.
    struct Variable {
        let name: String, takes: String
        let accepts: (String) -> Bool
    }

    static let zeroOrOne: (String) -> Bool = { $0 == "0" || $0 == "1" }
    static func integer(atLeast lo: Int) -> (String) -> Bool { { Int($0).map { $0 >= lo } ?? false } }

    /// What `kdgraph` reads: the watchdog's timeout, the kernels, the stall probe, and the test switches of
    /// `FaultInjection` and the self-test.
    static let read: [Variable] = [
        Variable(name: "KDGRAPH_COMM_TIMEOUT", takes: "seconds, a number (0 disables the watchdog)",
                 accepts: { Double($0)?.isFinite ?? false }),
        Variable(name: "KDGRAPH_AVX512", takes: "0 (the AVX2 kernels) or 1 (the default)", accepts: zeroOrOne),
        Variable(name: "KDGRAPH_STALL_PROBE", takes: "0 (no stall probe) or 1 (the default)", accepts: zeroOrOne),
        Variable(name: "KDGRAPH_FAIL_RANK", takes: "a rank, an integer ≥ 0", accepts: integer(atLeast: 0)),
        Variable(name: "KDGRAPH_FAIL_STEP", takes: "a step, an integer ≥ 0", accepts: integer(atLeast: 0)),
        Variable(name: "KDGRAPH_NAN_STEP", takes: "a step, an integer ≥ 0", accepts: integer(atLeast: 0)),
        Variable(name: "KDGRAPH_SECOND_PASS_MIRRORED", takes: "0 or 1", accepts: zeroOrOne),
    ]

    /// Read by the launch scripts, the build and the tests, not by `kdgraph` itself.
    static let readElsewhere = ["KDGRAPH", "KDGRAPH_STOP_GRACE", "KDGRAPH_LAUNCHER", "KDGRAPH_PORTABLE",
                                "KDGRAPH_PYTHON", "KDGRAPH_LOSS_FIXTURES", "KDGRAPH_INTEROP_DIR",
                                "KDGRAPH_TORCH_EXPORT_DIR"]

    /// Each variable of `read` set to a value it does not take, as `NAME=value: it takes …`.
    public static func errors(_ environment: [String: String]) -> [String] {
        read.compactMap { v in
            guard let value = environment[v.name], !v.accepts(value) else { return nil }
            return "\(v.name)=\(value): it takes \(v.takes)"
        }
    }

    /// Each `KDGRAPH_…` name that nothing of the project reads, with the names it may have meant.
    public static func warnings(_ environment: [String: String]) -> [String] {
        let known = Set(read.map(\.name) + readElsewhere)
        return environment.keys.filter { $0.hasPrefix("KDGRAPH_") && !known.contains($0) }.sorted().map { name in
            "\(name) is set but nothing of kdgraph reads it (it reads "
                + read.map(\.name).joined(separator: ", ") + "; docs/launch.md)"
        }
    }
}
