#!/usr/bin/env bash
# The project's test command (see README): installs the test dependencies, checks formatting
# and lints, builds everything, then runs every test (unit, integration, interoperability with
# real ACME clients, PostgreSQL). Runs every stage even after a failure so one run shows all
# problems; exits non-zero if any stage failed. The test run comes last so that its summary
# closes the output.
set -euo pipefail
cd "$(dirname "$0")/.."

# Free space first: a build that runs out of disk fails in the linker, far from the cause.
df -h . | sed 's/^/disk: /'
scripts/install-test-deps.sh
# The interop suite runs target/<profile>/sceau-server: build binaries before testing.
cargo build --workspace --all-targets

failed=()
stage() {
  local name=$1
  shift
  echo "==> $name: $*"
  if ! "$@"; then
    failed+=("$name")
  fi
}

stage fmt cargo fmt --all --check
stage clippy cargo clippy --workspace --all-targets -- -D warnings
stage doctests cargo test --workspace --doc --quiet
stage fuzz scripts/fuzz.sh
stage tests cargo nextest run --workspace --no-fail-fast

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "all checks passed"
