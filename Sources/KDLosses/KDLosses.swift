// KDLosses: see docs/architecture.md
