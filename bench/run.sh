#!/usr/bin/env bash
# Runs every comparison of rebound against its peers and writes RESULTS.md.
#
#   ./run.sh          full run: 10 benchmark rounds (0.3 s per benchmark),
#                     4 scenario rounds interleaved with them; ~13 minutes
#   ./run.sh -quick   10 benchmark rounds (0.03 s per benchmark), 1 short
#                     scenario round; ~2 minutes
#
# Raw output goes to out/ (not committed); RESULTS.md is generated from it.
# All traffic stays on 127.0.0.1 or in memory.
#
# REBOUND_SRC=dir ./run.sh measures the rebound source in dir instead of ../
# (e.g. a `git archive HEAD` snapshot while ../ is being edited); go.mod and
# go.sum are left untouched: a copy in out/ is passed with -modfile.
set -euo pipefail
cd "$(dirname "$0")"

mode=full
bench_rounds=10
benchtime=300ms
scn_rounds=4
scn_flags=(-dur 3s -heal-dur 10s)
for arg in "$@"; do
  case "$arg" in
    -quick|--quick)
      mode=quick
      benchtime=30ms
      scn_rounds=1
      scn_flags=(-dur 1.5s -heal-dur 4s)
      ;;
    *) echo "usage: $0 [-quick]" >&2; exit 2 ;;
  esac
done

out=out
rm -rf "$out"
mkdir -p "$out"
log="$out/run.log"
start=$(date +%s)

modflag=()
src=..
if [ -n "${REBOUND_SRC:-}" ]; then
  src=$(cd "$REBOUND_SRC" && pwd)
  sed "s#^replace github.com/rebound-grpc/rebound => .*#replace github.com/rebound-grpc/rebound => $src#" go.mod > "$out/go.mod"
  cp go.sum "$out/go.sum"
  modflag=(-modfile "$out/go.mod")
fi

echo "building..." | tee -a "$log"
go test "${modflag[@]}" -c -o "$out/bench.test" .
go build "${modflag[@]}" -o "$out/scenarios" ./cmd/scenarios
go build -o "$out/benchstat" golang.org/x/perf/cmd/benchstat

{
  echo "mode: $mode (benchmark rounds: $bench_rounds × -count 1, -benchtime $benchtime; scenario rounds: $scn_rounds, ${scn_flags[*]}, 200 calls/s)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "kernel: $(uname -sr)"
  echo "go: $(go version | cut -d' ' -f3-)"
  rev=$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "${REBOUND_SRC:-}" ]; then
    echo "rebound: snapshot in $src (REBOUND_SRC; ../ is at $rev)"
  else
    if [ -n "$(git -C .. status --porcelain -- . ':!bench' 2>/dev/null | head -1)" ]; then rev="$rev + uncommitted changes"; fi
    echo "rebound: ../ at $rev"
  fi
  go list -m -f '{{.Path}} {{.Version}}' \
    google.golang.org/grpc \
    google.golang.org/protobuf \
    github.com/failsafe-go/failsafe-go \
    github.com/grpc-ecosystem/go-grpc-middleware/v2 \
    go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc \
    go.opentelemetry.io/otel/sdk \
    golang.org/x/perf
} > "$out/meta.txt"
cat "$out/meta.txt" | tee -a "$log"

# Scenario rounds are spread evenly between the benchmark rounds.
every=$(( bench_rounds / scn_rounds ))
scn_done=0
for r in $(seq 1 "$bench_rounds"); do
  echo "benchmark round $r/$bench_rounds ($(( $(date +%s) - start )) s)" | tee -a "$log"
  "$out/bench.test" -test.run '^$' -test.bench . -test.benchmem -test.count 1 \
    -test.benchtime "$benchtime" > "$(printf '%s/bench-r%02d.txt' "$out" "$r")"
  if (( scn_done < scn_rounds && (r - 1) % every == 0 )); then
    echo "scenario round $((scn_done + 1))/$scn_rounds ($(( $(date +%s) - start )) s)" | tee -a "$log"
    "$out/scenarios" -rounds 1 -first-round "$scn_done" "${scn_flags[@]}" -out "$out/scenarios.jsonl" 2>&1 | tee -a "$log"
    scn_done=$((scn_done + 1))
  fi
done

cat "$out"/bench-r*.txt > "$out/bench-all.txt"
"$out/benchstat" -col /lib "$out/bench-all.txt" > "$out/benchstat.txt"
go run "${modflag[@]}" ./cmd/report -dir "$out" -o RESULTS.md
echo "wrote RESULTS.md in $(( $(date +%s) - start )) s" | tee -a "$log"
