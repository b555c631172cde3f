#!/usr/bin/env bash
# Runs the libFuzzer targets (Fuzz/UnderstudyFuzz) against their seed corpora (Fuzz/Corpus/TARGET).
#   Bench/fuzz.sh --list                 names the targets
#   Bench/fuzz.sh TARGET SECONDS         runs one target for SECONDS
#   Bench/fuzz.sh --all SECONDS          runs each target for SECONDS, one after another
#   Bench/fuzz.sh --seed                 rewrites the seed corpora from the package's encoders
# The sanitized build goes to .build/fuzz (the ordinary build never sees the fuzz target). New
# corpus entries and crashes go under ${UNDERSTUDY_FUZZ_OUT:-.build/fuzz/runs}, never into the repo.
# Exits non-zero when a target crashes, printing the reproducer's path and the command to rerun it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
corpora=$root/Fuzz/Corpus
out=${UNDERSTUDY_FUZZ_OUT:-$root/.build/fuzz/runs}
binary=$root/.build/fuzz/debug/UnderstudyFuzz

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
targets() { (cd "$corpora" && ls -d -- */ | tr -d /); }

build() {
  echo "fuzz.sh: building the fuzz targets (--sanitize fuzzer --sanitize address) into .build/fuzz" >&2
  # swiftc keeps only the last -sanitize= it is given, and SwiftPM passes one per --sanitize: the
  # -Xswiftc flag, which comes last, asks for both. --sanitize fuzzer still tells SwiftPM that
  # libFuzzer supplies main, and gives the C targets their coverage and checks.
  UNDERSTUDY_FUZZ=1 swift build --build-path "$root/.build/fuzz" --sanitize fuzzer --sanitize address \
    -Xswiftc -sanitize=fuzzer,address --product UnderstudyFuzz 2>&1 | sed "/ld.gold: warning: Cannot export local symbol/d" >&2
}

# run TARGET SECONDS: fuzz from the seeds plus what earlier runs found; crashes into $out/TARGET/crashes.
run() {
  local target=$1 seconds=$2
  [ -d "$corpora/$target" ] || { echo "fuzz.sh: no target \"$target\" (try --list)" >&2; return 2; }
  local found=$out/$target/corpus crashes=$out/$target/crashes log=$out/$target/fuzz.log
  mkdir -p "$found" "$crashes"
  echo "fuzz.sh: $target for ${seconds}s (log $log)" >&2
  local status=0
  # The Swift runtime's backtracer would catch the traps first; libFuzzer must see them to save the input.
  UNDERSTUDY_FUZZ_TARGET=$target SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 \
    "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$found" "$corpora/$target" >"$log" 2>&1 </dev/null || status=$?
  grep -E '^stat::number_of_executed_units|^stat::new_units_added' "$log" | sed "s/^/fuzz.sh: $target /" >&2 || true
  if [ "$status" -ne 0 ]; then
    grep -E 'ERROR: libFuzzer|Fatal error|SUMMARY' "$log" | head -5 >&2 || true
    local reproducer
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz.sh: $target CRASHED (exit $status); reproducer: ${reproducer:-see $log}" >&2
    [ -n "$reproducer" ] && echo "fuzz.sh: rerun with: UNDERSTUDY_FUZZ_TARGET=$target SWIFT_BACKTRACE=enable=no $binary $reproducer" >&2
    return 1
  fi
}

case "${1:-}" in
  --list) targets ;;
  --seed)
    [ $# -eq 1 ] || usage
    build
    for target in $(targets); do
      rm -f "$corpora/$target"/seed-*
      UNDERSTUDY_FUZZ_TARGET=$target UNDERSTUDY_FUZZ_WRITE_SEEDS=$corpora/$target "$binary"
      echo "fuzz.sh: $target: $(ls "$corpora/$target" | wc -l) corpus files" >&2
    done ;;
  --all)
    [ $# -eq 2 ] || usage
    build
    failed=()
    for target in $(targets); do run "$target" "$2" || failed+=("$target"); done
    if ((${#failed[@]} > 0)); then echo "fuzz.sh: crashed: ${failed[*]}" >&2; exit 1; fi
    echo "fuzz.sh: no crash in $(targets | wc -l) targets" >&2 ;;
  ""|-*) usage ;;
  *)
    [ $# -eq 2 ] || usage
    build
    run "$1" "$2" ;;
esac
