import KDComm
// Placeholder until the MPI communicator lands: lists the registered checks.
let checks = CommChecks.all + DataChecks.all + ModelChecks.all + LossChecks.all + TrainChecks.all
for c in checks { print(c.name) }
