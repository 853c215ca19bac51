#!/usr/bin/env bash
# Installs what KDGraph needs from Debian/Ubuntu packages when it is missing: OpenMPI (library,
# headers, mpirun), OpenBLAS (CBLAS + LAPACK) and pkg-config. Sourced by test.sh and quickstart.sh.
# The Swift toolchain (6.x) itself must be on PATH: https://www.swift.org/install/linux/
kd_need_install=0
command -v mpirun >/dev/null 2>&1 || kd_need_install=1
command -v pkg-config >/dev/null 2>&1 || kd_need_install=1
if [ "$kd_need_install" = 0 ]; then
  pkg-config --exists ompi-c openblas 2>/dev/null || kd_need_install=1
fi
if [ "$kd_need_install" = 1 ]; then
  echo "kdgraph: installing libopenmpi-dev openmpi-bin libopenblas-dev pkg-config" >&2
  if [ "$(id -u)" = 0 ]; then kd_sudo=""; elif command -v sudo >/dev/null 2>&1; then kd_sudo="sudo"; else
    echo "kdgraph: need root or sudo to apt-get install libopenmpi-dev openmpi-bin libopenblas-dev pkg-config" >&2
    exit 1
  fi
  $kd_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $kd_sudo apt-get install -y -qq \
    libopenmpi-dev openmpi-bin libopenblas-dev pkg-config >/dev/null
fi
if ! command -v swift >/dev/null 2>&1; then
  echo "kdgraph: no 'swift' on PATH; install the Swift 6 toolchain (https://www.swift.org/install/linux/)" >&2
  exit 1
fi
# mpirun as root (containers, CI) needs these; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One BLAS thread per rank: ranks already fill the cores.
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}"
