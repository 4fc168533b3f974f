#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs what it needs, builds the
# C++ engine three times (release, ThreadSanitizer, AddressSanitizer+UBSan),
# runs ctest on each, installs the Python package and runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
# libgtest-dev: the C++ tests; iproute2: the two-host remote test (network
# namespaces); openssl: the TLS test's self-signed certificate.
APT_NEEDED=""
for pkg in libgtest-dev iproute2 openssl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || APT_NEEDED="$APT_NEEDED $pkg"
done
if [ -n "$APT_NEEDED" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_NEEDED
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --upgrade "nanobind==3.1.0" "scikit-build-core>=0.10" ninja cmake numpy pytest pytest-timeout hypothesis matplotlib \
  "grpcio-tools==1.85.1"  # pinned: the committed tierflow_remote_pb2.py is its protoc's output
$PY -m pip install -q .

JOBS=$(nproc)
for cfg in release:"" tsan:thread asan:address; do
  dir=build/${cfg%%:*}
  san=${cfg#*:}
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTIERFLOW_BUILD_PYTHON=OFF -DTIERFLOW_BUILD_TESTS=ON -DTIERFLOW_SANITIZE="$san" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  echo "== ctest ($dir) =="
  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    ctest --test-dir "$dir" --output-on-failure -j "$JOBS"
done

echo "== pytest =="
# Run from outside the source tree so the installed package is imported.
$PY -m pytest -q -p no:cacheprovider --rootdir="$PWD" -c pyproject.toml "$PWD/tests/ut/py"
