// KDData: see docs/architecture.md
