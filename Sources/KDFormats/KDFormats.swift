// KDFormats: see docs/architecture.md
