#!/usr/bin/env bash
# Runs the whole KDGraph test suite: installs missing Debian packages, builds once in release mode,
# runs the unit tests (swift test), then the multi-rank tests under a real mpirun -np 2 and -np 4.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/ensure-deps.sh
start=$(date +%s)
swift build -c release --build-tests
swift test -c release --skip-build
SKIP_BUILD=1 bash Tests/mpi/run.sh
echo "kdgraph tests: all passed in $(( $(date +%s) - start )) s"
