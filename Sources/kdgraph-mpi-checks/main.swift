import Foundation
import KDComm
import KDCore
import KDTensor
import KDTools

// kdgraph-mpi-checks: multi-rank checks under a real `mpirun -np N` (Tests/mpi/run.sh).
//
//   kdgraph-mpi-checks [NAME-FILTER ...]     run the checks whose name contains a filter (all if none)
//   kdgraph-mpi-checks --list                print the check names
//   kdgraph-mpi-checks --selftest            SelfTest.run; rank 0 prints its JSON line
//   kdgraph-mpi-checks --fail-rank R         fault test: the self-test throws on rank R, the job aborts
//                                            (same as KDGRAPH_FAIL_RANK=R with --selftest)
//   kdgraph-mpi-checks --hang-rank R --timeout S
//                                            watchdog test: rank R skips a barrier, the others are
//                                            aborted after S seconds
//   kdgraph-mpi-checks --bench               all-reduce timings, blocking vs overlapped buckets, and the
//                                            exact gradient sum's two transports (JSON lines, rank 0)
//   --timeout S                              watchdog timeout in seconds (default 300)

let checks = CommChecks.all + DataChecks.all + ModelChecks.all + LossChecks.all + TrainChecks.all

var filters: [String] = []
var list = false, selftest = false, bench = false
var failRank: Int? = SelfTest.failRankFromEnvironment()
var hangRank: Int?
var timeout: Double?
var argv = Array(CommandLine.arguments.dropFirst())[...]
func intArgument(_ flag: String) -> Int {
    guard let s = argv.popFirst(), let v = Int(s) else {
        fputs("kdgraph-mpi-checks: \(flag) needs an integer\n", stderr); exit(2)
    }
    return v
}
while let a = argv.popFirst() {
    switch a {
    case "--list": list = true
    case "--selftest": selftest = true
    case "--bench": bench = true
    case "--fail-rank": failRank = intArgument(a); selftest = true
    case "--hang-rank": hangRank = intArgument(a)
    case "--timeout":
        guard let s = argv.popFirst(), let v = Double(s) else {
            fputs("kdgraph-mpi-checks: --timeout needs seconds\n", stderr); exit(2)
        }
        timeout = v
    case "-h", "--help":
        print("usage: kdgraph-mpi-checks [--list | --selftest | --fail-rank R | --hang-rank R | --bench] "
              + "[--timeout S] [NAME-FILTER ...]")
        exit(0)
    default: filters.append(a)
    }
}
if list {
    for c in checks { print(c.name) }
    exit(0)
}

let world: MPICommunicator
do {
    world = try MPICommunicator.initialize(blasThreads: 1)
} catch {
    fputs("kdgraph-mpi-checks: MPI initialisation failed: \(error)\n", stderr)
    exit(1)
}
if let timeout { world.setTimeout(timeout, setting: "--timeout") }

if selftest {
    let line = runOrAbort(world) { try SelfTest.run(comm: world, failRank: failRank) }
    if world.rank == 0 { print(line); fflush(stdout) }
    exit(line.hasPrefix("{\"ok\": true") ? 0 : 1)
}

if let hangRank {
    // Every rank but `hangRank` enters a barrier that `hangRank` never joins: the watchdog must end
    // the job after `--timeout` seconds.
    world.currentStep = 0
    if world.rank == hangRank {
        while true { sleep(1) }
    }
    runOrAbort(world) { try world.barrier() }
    exit(0)
}

if bench {
    runOrAbort(world) {
        try CommBenchmark.run(world); try CommBenchmark.overlap(world); try CommBenchmark.exactTransports(world)
    }
    exit(0)
}

// Failures are agreed on a duplicate of the world, so the agreement can never be matched against a
// collective of a check that one rank left early.
let agreement = runOrAbort(world) { try world.duplicate() }
let selected = filters.isEmpty ? checks : checks.filter { c in filters.contains { c.name.contains($0) } }
var passed = 0, failed = 0
for check in selected {
    var message: String?
    do {
        try check.run(world)
    } catch {
        message = String(describing: error)
    }
    Tape.reset()
    GradMode.isEnabled = true
    let anyFailed = runOrAbort(world) { try agreement.allReduce(message == nil ? 0 : 1, op: .max) }
    if anyFailed == 0 {
        passed += 1
        if world.rank == 0 { print("PASS \(check.name)") }
    } else {
        failed += 1
        let mine = message.map { Array("rank \(world.rank): \($0); ".utf8) } ?? []
        let all: [UInt8] = runOrAbort(world) { try agreement.allGatherV(mine) }
        if world.rank == 0 {
            var text = String(decoding: all, as: UTF8.self)
            if text.hasSuffix("; ") { text.removeLast(2) }
            print("FAIL \(check.name): \(text)")
        }
    }
    fflush(stdout)
}
if world.rank == 0 {
    print("\(passed) passed, \(failed) failed")
    fflush(stdout)
}
exit(failed > 0 ? 1 : 0)
