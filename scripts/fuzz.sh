#!/usr/bin/env bash
# Runs the cargo-fuzz (libFuzzer) targets of fuzz/ for FUZZ_SECONDS seconds each (default 30):
# all of them, or those named as arguments (`scripts/fuzz.sh jws`). Each run starts from a
# scratch copy of the seed corpus fuzz/corpus/<target>/, so what a run adds never lands in the
# repository. Exits non-zero if a target finds a crash, a leak, a hang (one input over 10 s)
# or an input that needs more than 2 GiB, and prints the reproducer's path.
#
# The targets build with the stable toolchain: cargo-fuzz needs unstable flags (-Zsanitizer,
# the sancov passes), which RUSTC_BOOTSTRAP=1 lets stable rustc accept, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi

cd fuzz
mapfile -t known < <(cargo fuzz list)
if [ $# -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    if ! printf '%s\n' "${known[@]}" | grep -qx -- "$t"; then
      echo "fuzz.sh: no target $t (targets: ${known[*]})" >&2
      exit 2
    fi
  done
else
  targets=("${known[@]}")
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# -a: debug assertions, so integer overflows and failed debug_asserts count as crashes.
build_start=$(date +%s)
if [ ${#targets[@]} -eq 1 ]; then
  cargo fuzz build -a "${targets[0]}"
else
  cargo fuzz build -a
fi
echo "fuzz build: $(($(date +%s) - build_start)) s"

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus=$scratch/corpus-$t
  mkdir -p "$corpus"
  if [ -d "corpus/$t" ]; then
    cp -- corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  fi
  log=$scratch/$t.log
  echo "==> fuzz $t for ${seconds} s"
  if cargo fuzz run -a "$t" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    summary+=("$(printf '%-10s ok     %10s runs %8s exec/s' "$t" "${runs:-?}" "${rate:-?}")")
  else
    failed+=("$t")
    tail -n 60 "$log" >&2
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    summary+=("$(printf '%-10s FAILED reproducer: %s' "$t" "${reproducer:-none written, see the log above}")")
    if [ -n "$reproducer" ]; then
      echo "fuzz $t found a failing input: $reproducer" >&2
      echo "  reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a $t $reproducer)" >&2
    fi
  fi
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}" >&2
  exit 1
fi
