print("mpi checks")
