import KDTrain
print("kdgraph: coming soon")
