import CMPI
import Foundation
import KDCore

/// What a rank answered to the stall probe: whether it was inside a watched call, which one, at which
/// training step, and how many blocking collectives it had begun (`sequence`: every rank issues the
/// same collectives in the same order, so equal numbers mean the same collective, a smaller one a rank
/// that has not reached it, a larger one a rank that already left it, e.g. the root of a broadcast),
/// and for how many seconds it was recently stopped (`stoppedSeconds`, 0: not): a rank stopped with
/// SIGSTOP and resumed by mpirun's SIGCONT once the first waiting rank aborts looks like it arrived.
public struct PeerState: Equatable, Sendable {
    public var inCollective: Bool
    public var name: String
    public var step: Int
    public var sequence: Int
    public var stoppedSeconds: Double

    public init(inCollective: Bool, name: String, step: Int, sequence: Int, stoppedSeconds: Double = 0) {
        self.inCollective = inCollective
        self.name = name
        self.step = step
        self.sequence = sequence
        self.stoppedSeconds = stoppedSeconds
    }
}

/// Names the rank(s) a timed-out collective is waiting for, from the ranks that did arrive.
///
/// A stalled rank (SIGSTOP, a hang outside MPI, a dead node) cannot report anything, and the ranks
/// waiting for it are blocked inside the collective's MPI call, so the question is asked by the
/// watchdog thread (hence `MPI_THREAD_MULTIPLE`) over a duplicate of the world (its messages can never
/// match the application's). Every watchdog thread answers queries on each wake-up: a posted
/// `MPI_Irecv(ANY_SOURCE)` it tests with `MPI_Test`, answered with this rank's `PeerState` by
/// `MPI_Isend`. When a collective overruns, the rank sends a query to every other rank and waits up to
/// `grace` seconds for the answers, answering the others' queries meanwhile: a rank that does not answer
/// is stopped or hung outside MPI; one that answers outside the collective is late or elsewhere.
///
/// Cost: nothing per collective; one `MPI_Test` per watchdog wake-up (at most once a second), and the
/// thread level the world is initialised with (measured: docs/communication.md, "Measurements").
final class StallProbe: @unchecked Sendable {
    static let queryTag: Int32 = 7101
    static let answerTag: Int32 = 7102
    /// An answer: step and sequence (Int64 each), in a collective (one byte at 16), milliseconds stopped
    /// (Int64 at 24), the call's name (NUL-padded UTF-8 from byte 32).
    static let answerBytes = 64

    let comm: MPI_Comm
    let rank: Int
    let size: Int
    /// Each rank's host (`MPI_Get_processor_name`, by rank), gathered once at start-up: a rank that no
    /// longer answers (a host cut off, a node gone) cannot say where it runs.
    let hosts: [String]
    /// Bytes per host name in the start-up gather (OpenMPI's `MPI_MAX_PROCESSOR_NAME`; longer names are cut).
    static let hostNameBytes = 256
    private let lock = NSLock()
    private var closed = false
    private var queryRequest: MPI_Request? = nil
    private let queryBuffer = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
    /// Answers (or queries) in flight and their buffers, freed once `MPI_Test` reports them sent.
    private var sends: [(request: MPI_Request?, buffer: UnsafeMutableRawPointer)] = []

    /// Duplicates `world` (collective: every rank calls this from `MPICommunicator.initialize`).
    init(world: MPI_Comm, rank: Int, size: Int) throws {
        var dup: MPI_Comm? = nil
        try checkMPI(MPI_Comm_dup(world, &dup), "MPI_Comm_dup (stall probe)")
        guard let dup else {
            throw CommError.mpi(op: "MPI_Comm_dup (stall probe)", code: -1, message: "returned a null communicator")
        }
        try checkMPI(MPI_Comm_set_errhandler(dup, kd_mpi_errors_return()), "MPI_Comm_set_errhandler")
        comm = dup
        self.rank = rank
        self.size = size
        hosts = try StallProbe.gatherHostNames(dup, size: size)
    }

    /// Every rank's `MPI_Get_processor_name`, by rank (collective over `comm`).
    static func gatherHostNames(_ comm: MPI_Comm, size: Int) throws -> [String] {
        let n = hostNameBytes
        var mine = [CChar](repeating: 0, count: n + 1)
        var length: Int32 = 0
        try checkMPI(MPI_Get_processor_name(&mine, &length), "MPI_Get_processor_name")
        var all = [UInt8](repeating: 0, count: n * size)
        try mine.withUnsafeBytes { send in
            try all.withUnsafeMutableBytes { recv in
                try checkMPI(MPI_Allgather(send.baseAddress, Int32(n), kd_mpi_byte(), recv.baseAddress, Int32(n),
                                           kd_mpi_byte(), comm), "MPI_Allgather (host names)")
            }
        }
        return (0..<size).map { r in
            let bytes = all[r * n..<(r + 1) * n].prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    /// Answers every query that has arrived with `state()`, and frees the buffers of sent answers.
    func serve(_ state: () -> PeerState) {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        while true {
            if queryRequest == nil {
                var req = kd_mpi_request_null()
                guard MPI_Irecv(queryBuffer, 8, kd_mpi_byte(), kd_mpi_any_source(), StallProbe.queryTag,
                                comm, &req) == kd_mpi_success() else { return }
                queryRequest = req
            }
            var flag: Int32 = 0
            var status = MPI_Status()
            guard MPI_Test(&queryRequest, &flag, &status) == kd_mpi_success(), flag != 0 else { break }
            queryRequest = nil
            send(StallProbe.encode(state()), to: Int(status.MPI_SOURCE), tag: StallProbe.answerTag)
        }
        reapSends()
    }

    /// Asks every other rank for its state; returns the answers that arrived within `grace` seconds,
    /// by rank, answering the others' queries (`state`) while it waits.
    func ask(grace: Double, state: () -> PeerState) -> [Int: PeerState] {
        var pending: [Int: (request: MPI_Request?, buffer: UnsafeMutableRawPointer)] = [:]
        lock.lock()
        if !closed {
            for r in 0..<size where r != rank {
                send([UInt8](repeating: 0, count: 8), to: r, tag: StallProbe.queryTag)
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: StallProbe.answerBytes, alignment: 8)
                var req = kd_mpi_request_null()
                if MPI_Irecv(buffer, Int32(StallProbe.answerBytes), kd_mpi_byte(), Int32(r), StallProbe.answerTag,
                             comm, &req) == kd_mpi_success() {
                    pending[r] = (req, buffer)
                } else {
                    buffer.deallocate()
                }
            }
        }
        lock.unlock()
        var answers: [Int: PeerState] = [:]
        let deadline = monotonicSeconds() + grace
        while !pending.isEmpty && monotonicSeconds() < deadline {
            serve(state)
            lock.lock()
            for (r, p) in pending {
                var req = p.request
                var flag: Int32 = 0
                if MPI_Test(&req, &flag, kd_mpi_status_ignore()) == kd_mpi_success(), flag != 0 {
                    answers[r] = StallProbe.decode(
                        UnsafeRawBufferPointer(start: p.buffer, count: StallProbe.answerBytes))
                    p.buffer.deallocate()
                    pending[r] = nil
                } else {
                    pending[r] = (req, p.buffer)
                }
            }
            lock.unlock()
            usleep(10_000)
        }
        // The job is aborted next: receives that never completed are left to MPI_Abort (cancelling a
        // receive from a stopped rank is allowed but needs no care here).
        return answers
    }

    /// Stops serving before `MPI_Finalize` (the watchdog thread must not call MPI after it): cancels
    /// the posted receive and forgets answers still in flight.
    func close() {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        if queryRequest != nil {
            MPI_Cancel(&queryRequest)
            MPI_Wait(&queryRequest, kd_mpi_status_ignore())
        }
        reapSends()
        for s in sends { var r = s.request; MPI_Request_free(&r) }
        sends.removeAll()
    }

    // Caller holds `lock`.
    private func send(_ bytes: [UInt8], to r: Int, tag: Int32) {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 8)
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        var req = kd_mpi_request_null()
        if MPI_Isend(buffer, Int32(bytes.count), kd_mpi_byte(), Int32(r), tag, comm, &req) == kd_mpi_success() {
            sends.append((req, buffer))
        } else {
            buffer.deallocate()
        }
    }

    // Caller holds `lock`.
    private func reapSends() {
        sends = sends.compactMap { s in
            var req = s.request
            var flag: Int32 = 0
            if MPI_Test(&req, &flag, kd_mpi_status_ignore()) == kd_mpi_success(), flag != 0 {
                s.buffer.deallocate()
                return nil
            }
            return (req, s.buffer)
        }
    }

    static func encode(_ s: PeerState) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: answerBytes)
        withUnsafeBytes(of: Int64(s.step).littleEndian) { out.replaceSubrange(0..<8, with: $0) }
        withUnsafeBytes(of: Int64(s.sequence).littleEndian) { out.replaceSubrange(8..<16, with: $0) }
        out[16] = s.inCollective ? 1 : 0
        withUnsafeBytes(of: Int64(s.stoppedSeconds * 1000).littleEndian) { out.replaceSubrange(24..<32, with: $0) }
        let name = Array(s.name.utf8.prefix(answerBytes - 32))
        out.replaceSubrange(32..<(32 + name.count), with: name)
        return out
    }

    static func decode(_ b: UnsafeRawBufferPointer) -> PeerState {
        func int64(_ at: Int) -> Int {
            var v: Int64 = 0
            withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[at..<(at + 8)])) }
            return Int(Int64(littleEndian: v))
        }
        let name = b[32..<answerBytes].prefix { $0 != 0 }
        return PeerState(inCollective: b[16] != 0, name: String(decoding: name, as: UTF8.self), step: int64(0),
                         sequence: int64(8), stoppedSeconds: Double(int64(24)) / 1000)
    }
}
