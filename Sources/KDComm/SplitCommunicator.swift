import CMPI

extension MPICommunicator {
    /// A communicator of this rank alone (`MPI_Comm_split` with the rank as colour). Multi-rank checks
    /// use it to compute the one-process reference of a distributed run inside the same job.
    public func alone() throws -> MPICommunicator {
        var c: MPI_Comm? = nil
        try checkMPI(MPI_Comm_split(handle, Int32(rank), 0, &c), "MPI_Comm_split")
        guard let c else { throw CommError.invalidArgument(op: "MPI_Comm_split", message: "returned no communicator") }
        return try MPICommunicator(handle: c)
    }
}
