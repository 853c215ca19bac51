// KDModels: see docs/architecture.md
