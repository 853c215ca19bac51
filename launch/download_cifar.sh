#!/usr/bin/env bash
# Downloads the official CIFAR-10 / CIFAR-100 *binary* archives, checks their MD5 (the values the
# dataset page publishes), and extracts them for the `cifar` data source (docs/data.md).
#
#   launch/download_cifar.sh [cifar10|cifar100|all] [DEST]      (defaults: all, ./data)
#
# Result:
#   DEST/cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin   -> data.path for data.classes: 10
#   DEST/cifar-100-binary/{train,test}.bin                        -> data.path for data.classes: 100 (fine)
#                                                                    or 20 (coarse labels)
# Needs curl or wget, tar, and md5sum (or `md5 -q` on macOS). Re-running skips archives already
# present with the right checksum.
set -euo pipefail

WHICH="${1:-all}"
DEST="${2:-./data}"
BASE="https://www.cs.toronto.edu/~kriz"

case "$WHICH" in
  cifar10|cifar100|all) ;;
  *) echo "usage: $0 [cifar10|cifar100|all] [DEST]" >&2; exit 2 ;;
esac

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then md5sum "$1" | cut -d' ' -f1; else md5 -q "$1"; fi
}

fetch() {
  local url="$1" out="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -o "$out.part" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -O "$out.part" "$url"
  else
    echo "error: need curl or wget" >&2; exit 1
  fi
  mv "$out.part" "$out"
}

get() {
  local archive="$1" md5="$2" folder="$3"
  local path="$DEST/$archive"
  mkdir -p "$DEST"
  if [[ -f "$path" && "$(md5_of "$path")" == "$md5" ]]; then
    echo "$archive: already downloaded"
  else
    echo "$archive: downloading $BASE/$archive"
    fetch "$BASE/$archive" "$path"
    local got; got="$(md5_of "$path")"
    if [[ "$got" != "$md5" ]]; then
      echo "error: $path has MD5 $got, expected $md5 (corrupt or changed download; removed)" >&2
      rm -f "$path"; exit 1
    fi
  fi
  tar -xzf "$path" -C "$DEST"
  echo "$archive: extracted to $DEST/$folder"
}

if [[ "$WHICH" == cifar10 || "$WHICH" == all ]]; then
  get cifar-10-binary.tar.gz c32a1d4ab5d03f1284b67883e8d87530 cifar-10-batches-bin
fi
if [[ "$WHICH" == cifar100 || "$WHICH" == all ]]; then
  get cifar-100-binary.tar.gz 03b5dce01913d631647c71ecec9e9cb8 cifar-100-binary
fi
