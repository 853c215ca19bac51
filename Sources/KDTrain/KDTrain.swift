// KDTrain: see docs/architecture.md
