// KDComm: see docs/architecture.md
