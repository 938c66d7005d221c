#!/usr/bin/env bash
# `pupil serve` against llama-server, side by side in one run, on the same GGUF with the same
# threads and slots, through the same load generator (`pupil loadgen`).
#
# llama-server is built from the llama.cpp tree inside PyPI's llama-cpp-python 0.3.36 source
# distribution (models/fetch-llama-cpp.sh downloads and sha256-checks it), natively for this
# CPU, once: the build is cached in models/.cache/llama-server-build (git-ignored; ~10 minutes
# on 2 cores the first time). llama-server runs twice, with and without `-kvu` (one unified
# KV buffer for all slots); its better figure per scenario is kept.
#
# Scenarios (Gemma 3 270M Q4_K_M, 2 threads, 8 slots unless told otherwise):
#   cN      N closed-loop clients (N in --clients), unique 256-token prompts, 128 tokens out
#   long    8 streams decoding while one 2,048-token prompt arrives: the streams' ITL p99
#           over the time the prompt waits for its first token (the servers get one slot
#           more, so that the prompt does not wait for a stream to end)
#   prefix  8 clients, a shared 400-token system prompt with unique 50-token questions (BOS
#           included), 32 tokens out: TTFT with prefix reuse
#   determinism  under 32 clients, the fraction of greedy answers equal to the same request
#                run alone
# Everything is on loopback; every server is started and stopped here; every load stops by
# itself (a request count and a deadline).
#
# Usage: scripts/serve-bench.sh [--requests N] [--scale K] [--solo N] [--clients "1 4 8 16 32"]
#            [--threads 2] [--slots 8] [--deadline SECONDS] [--model GGUF] [--skip-llama]
#            [--build-only] [--json FILE] [--report DIR]
#   --requests N   requests of a closed-loop scenario with C clients: max(N, C) * K (default 8)
#   --scale K      multiply the request counts by K (default 1: the whole run takes about ten
#                  minutes on 2 cores; 3 or more for steadier numbers)
#   --solo N       requests of the largest load run again alone for the determinism check
#                  (default 16)
#   --deadline S   the longest one load may take (default 240 s): every load stops by itself
#   --report DIR   print the table of an earlier run's results (its raw results directory)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

requests=8
scale=1
solo_n=16
clients="1 4 8 16 32"
threads=2
slots=8
deadline=240
skip_llama=0
build_only=0
json_out=""
report_dir=""
model=models/gemma-3-270m-q4_k_m.gguf
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) requests=$2; shift 2 ;;
        --scale) scale=$2; shift 2 ;;
        --solo) solo_n=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --slots) slots=$2; shift 2 ;;
        --deadline) deadline=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --skip-llama) skip_llama=1; shift ;;
        --build-only) build_only=1; shift ;;
        --json) json_out=$2; shift 2 ;;
        --report) report_dir=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "error: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
done

# print_table DIR ELAPSED: the table from the loads' JSON in DIR (a run cut short prints what
# it has: a missing figure is "-").
print_table() {
python3 - "$1" "$clients" "$2" "$threads" "$slots" "$json_out" <<'PY'
import json, os, sys
out, clients, elapsed, threads, slots, json_out = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]

def load(kind, scen):
    try:
        return json.load(open(os.path.join(out, f"{kind}.{scen}.json")))
    except (OSError, ValueError):  # not run, or cut short
        return None

def get(r, path):
    for k in path:
        if r is None:
            return None
        r = r.get(k)
    return r

kinds = [k for k in ("pupil", "llama", "llama-kvu") if any(f.startswith(k + ".") and f.endswith(".json") for f in os.listdir(out))]
rows = []  # (scenario, metric, higher_is_better, path)
for c in clients:
    s = f"c{c}"
    rows += [(s, f"C={c}", "output tok/s", True, ("output_tok_s",)),
             (s, f"C={c}", "total tok/s", True, ("total_tok_s",)),
             (s, f"C={c}", "TTFT p50 ms", False, ("ttft_ms", "p50")),
             (s, f"C={c}", "TTFT p99 ms", False, ("ttft_ms", "p99")),
             (s, f"C={c}", "ITL p50 ms", False, ("itl_ms", "p50")),
             (s, f"C={c}", "ITL p99 ms", False, ("itl_ms", "p99")),
             (s, f"C={c}", "errors", False, ("errors",)),
             (s, f"C={c}", "completed", True, ("completed",))]
big = f"c{max(int(c) for c in clients)}"
rows += [(big, f"C={big[1:]}", "identical to solo", True, ("solo",)),
         ("long", "long prompt", "streams ITL p99 ms", False, ("long_prompt", "streams_itl_ms", "p99")),
         ("long", "long prompt", "streams ITL max ms", False, ("long_prompt", "streams_itl_ms", "max")),
         ("long", "long prompt", "its TTFT ms", False, ("long_prompt", "ttft_ms")),
         ("long", "long prompt", "errors", False, ("errors",)),
         ("prefix", "shared prefix", "TTFT p50 ms", False, ("ttft_ms", "p50")),
         ("prefix", "shared prefix", "TTFT p99 ms", False, ("ttft_ms", "p99")),
         ("prefix", "shared prefix", "errors", False, ("errors",))]

def peak_rss(kind):
    vals = [get(load(kind, s), ("server_memory", "peak_rss_kib")) for s in [f"c{c}" for c in clients] + ["prefix", "long"]]
    vals = [v for v in vals if v is not None]
    return max(vals) / 1024 if vals else None

def fmt(v, metric):
    if v is None:
        return "-"
    if metric == "identical to solo":
        return f"{100 * v:.0f}%"
    if metric == "completed":
        return f"{v}/{requested}"
    if metric == "errors":
        return str(v)
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"

def value(kind, scen, metric, path):
    if path is None:
        return peak_rss(kind)
    v = get(load(kind, scen), path)
    if metric == "identical to solo":  # a fraction of the requests checked, if any were
        return v["identical"] / v["checked"] if v and v.get("checked") else None
    return v

table = []
summary = {}
for scen, label, metric, higher, path in rows + [("rss", "server", "peak RSS MiB (largest)", False, None)]:
    requested = get(load("pupil", scen), ("requests",))
    vals = {k: value(k, scen, metric, path) for k in kinds}
    p = vals.get("pupil")
    # A variant whose load was cut by the deadline has figures of its fastest requests only:
    # it is kept only if no variant completed every request.
    whole = [k for k in ("llama", "llama-kvu") if get(load(k, scen), ("cut",)) == 0]
    lv = [(vals[k], k) for k in (whole or ["llama", "llama-kvu"]) if k in vals and vals[k] is not None]
    best = (max if higher else min)(lv) if lv else (None, None)
    ratio = "-"
    if p is not None and best[0] not in (None, 0) and metric not in ("errors", "completed", "identical to solo"):
        ratio = f"{p / best[0]:.2f}x"
    mark = " (kvu)" if best[1] == "llama-kvu" else ""
    if metric == "identical to solo":  # how many were checked, as the load and its deadline allowed
        n = lambda k: get(load(k, scen), ("solo", "checked")) or 0
        table.append((label, metric, fmt(p, metric) + f" of {n('pupil')}", fmt(best[0], metric) + mark
                      + (f" of {n(best[1])}" if best[1] else ""), ratio))
        continue
    table.append((label, metric, fmt(p, metric), fmt(best[0], metric) + mark, ratio))
    summary[f"{scen}:{metric}"] = {"pupil": p, "llama_server": best[0], "llama_variant": best[1], "all": vals}

w = [max(len(r[i]) for r in table + [("scenario", "metric", "pupil", "llama-server", "pupil/llama")]) for i in range(5)]
line = lambda r: "  ".join(x.ljust(w[i]) if i < 2 else x.rjust(w[i]) for i, x in enumerate(r))
print(f"pupil serve vs llama-server, Gemma 3 270M Q4_K_M, {threads} threads, {slots} slots, loopback ({elapsed} s)")
print(line(("scenario", "metric", "pupil", "llama-server", "pupil/llama")))
print(line(tuple("-" * n for n in w)))
prev = None
for r in table:
    print(line((r[0] if r[0] != prev else "",) + r[1:]))
    prev = r[0]
print("llama-server: the better of -no-kvu and -kvu per figure ((kvu) where -kvu's); ratios < 1 are better for latencies.")
if json_out:
    json.dump({"threads": int(threads), "slots": int(slots), "elapsed_s": int(elapsed), "figures": summary,
               "runs": {f"{k}.{s}": load(k, s) for k in kinds for s in [f"c{c}" for c in clients] + ["prefix", "long"]}},
              open(json_out, "w"), indent=1)
PY
}

if [ -n "$report_dir" ]; then
    print_table "$report_dir" "?"
    exit 0
fi

cache=$root/models/.cache
src=$cache/llama.cpp-src
build=$cache/llama-server-build
server_bin=$build/bin/llama-server
extra_cmake=()

# ---------------------------------------------------------------- llama-server, built once
build_llama_server() {
    models/fetch-llama-cpp.sh >&2
    local version=0.3.36
    local tarball=$cache/llama_cpp_python-$version.tar.gz
    local sha
    sha=$(sha256sum "$tarball" | cut -d' ' -f1)
    if [ -x "$server_bin" ] && [ "$(cat "$build/.source-sha256" 2>/dev/null)" = "$sha" ]; then
        return 0
    fi
    if [ "$(cat "$src/.source-sha256" 2>/dev/null)" != "$sha" ]; then
        echo "unpacking llama.cpp from $tarball" >&2
        local tmp
        tmp=$(mktemp -d "$cache/llama.cpp-src.partial.XXXXXX")
        tar -xzf "$tarball" -C "$tmp" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
        echo "$sha" > "$tmp/.source-sha256"
        rm -rf "$src"
        mv "$tmp" "$src"
    fi
    # Every flag below is an option of this tree's CMakeLists.txt (LLAMA_CURL is deprecated
    # there and downloads nothing, so it is not passed): no prebuilt web UI fetched at build
    # time, no HTTPS, ggml's own thread pool as in pupil's comparisons, this CPU's ISA.
    echo "building llama-server (first time: ~10 minutes on 2 cores)" >&2
    cmake -S "$src" -B "$build" -DGGML_NATIVE=ON -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_OPENSSL=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DCMAKE_BUILD_TYPE=Release "${extra_cmake[@]}" >"$build.log" 2>&1 \
        || { echo "error: cmake configure failed, see $build.log" >&2; exit 1; }
    cmake --build "$build" --target llama-server -j2 >>"$build.log" 2>&1 \
        || { echo "error: llama-server build failed, see $build.log" >&2; exit 1; }
    echo "$sha" > "$build/.source-sha256"
}

# llama_server_starts: whether llama-server loads the model and answers /health (its load
# runs a warm-up pass through the kernels it picked for this CPU).
llama_server_starts() {
    local port pid
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$server_bin" -m "$model" --host 127.0.0.1 --port "$port" -t "$threads" -np 1 -c 512 >"$build.smoke.log" 2>&1 &
    pid=$!
    for _ in $(seq 600); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            return 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]; then
            kill -TERM "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
            return 0
        fi
        sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 1
}

models/fetch-gemma3-270m.sh >&2
if [ "$skip_llama" = 0 ]; then
    build_llama_server
    # A native build takes the CPU's AMX tile kernels where the compiler offers them. On some
    # machines (seen on a Sapphire Rapids VM) llama.cpp's AMX matmul then faults while loading
    # (an invalid-opcode trap in tinygemm_kernel_amx, though AMX itself works there): build it
    # again without AMX, keeping every other native ISA and its repacked kernels.
    if ! llama_server_starts; then
        echo "llama-server does not start on this machine (log: $build.smoke.log); building it without AMX" >&2
        build=$cache/llama-server-build-noamx
        server_bin=$build/bin/llama-server
        no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
        extra_cmake=(-DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx")
        build_llama_server
        llama_server_starts || { echo "error: llama-server without AMX does not start either (log: $build.smoke.log)" >&2; exit 1; }
    fi
fi
if [ "$build_only" = 1 ]; then
    echo "ok: $server_bin"
    exit 0
fi

# ---------------------------------------------------------------- pupil
cargo build --release --bin pupil >&2
pupil=$root/target/release/pupil
ctx=4096                      # positions per slot, for both servers
out=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")
server_pid=""

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server KIND SLOTS: pupil | llama | llama-kvu, on a free loopback port.
start_server() {
    local kind=$1 n_slots=$2 port
    port=$(free_port)
    url=http://127.0.0.1:$port
    case "$kind" in
        pupil) "$pupil" serve -m "$model" --host 127.0.0.1 --port "$port" -t "$threads" --slots "$n_slots" \
                   --ctx "$ctx" >"$out/$kind.log" 2>&1 & ;;
        llama) "$server_bin" -m "$model" --host 127.0.0.1 --port "$port" -t "$threads" -np "$n_slots" \
                   -c $((n_slots * ctx)) -no-kvu >"$out/$kind.log" 2>&1 & ;;
        llama-kvu) "$server_bin" -m "$model" --host 127.0.0.1 --port "$port" -t "$threads" -np "$n_slots" \
                   -c $((n_slots * ctx)) -kvu >"$out/$kind.log" 2>&1 & ;;
    esac
    server_pid=$!
    for _ in $(seq 600); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "error: $kind exited while starting; its log:" >&2
            tail -20 "$out/$kind.log" >&2
            exit 1
        fi
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && return 0
        sleep 0.2
    done
    echo "error: $kind did not answer /health within 120 s (log: $out/$kind.log)" >&2
    exit 1
}

# lg KIND SCENARIO ARGS...: one load, its JSON kept as $out/KIND.SCENARIO.json.
lg() {
    local kind=$1 scenario=$2
    shift 2
    echo "  $kind $scenario: pupil loadgen $*" >&2
    "$pupil" loadgen --url "$url" --server-pid "$server_pid" --deadline "$deadline" --json "$@" \
        >"$out/$kind.$scenario.json" || { echo "error: pupil loadgen failed on $kind $scenario" >&2; exit 1; }
}

max() { if [ "$1" -gt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# scenario KIND NAME SLOTS ARGS...: one load on a server of its own, started for it.
scenario() {
    local kind=$1 name=$2 n_slots=$3
    shift 3
    start_server "$kind" "$n_slots"
    lg "$kind" "$name" "$@"
    stop_server
}

# Scenario by scenario, every kind of server in turn, so that on a shared machine each
# scenario meets the servers under about the same conditions; every load gets a freshly
# started server (empty caches), and prompts never repeat across loads (--prompt-offset).
started=$(date +%s)
kinds=(pupil)
[ "$skip_llama" = 0 ] && kinds+=(llama llama-kvu)
largest=0
for c in $clients; do largest=$(max "$largest" "$c"); done
offset=1
for c in $clients; do
    n=$(( $(max "$requests" "$c") * scale ))
    solo=()
    # The determinism check runs under the largest load (32 clients by default).
    [ "$c" = "$largest" ] && solo=(--solo "$(( solo_n < n ? solo_n : n ))")
    for kind in "${kinds[@]}"; do
        scenario "$kind" "c$c" "$slots" -c "$c" -n "$n" --prompt-offset "$offset" "${solo[@]}"
    done
    offset=$((offset + n))
done
# A 400-token system prompt shared by every request, then a 50-token question of its own.
n=$(( $(max "$requests" "$slots") * scale ))
for kind in "${kinds[@]}"; do
    scenario "$kind" prefix "$slots" -c "$slots" -n "$n" --shared-prefix 400 --prompt-tokens 50 --max-tokens 32
done
# One slot more, so that the 2,048-token prompt does not wait for one of the streams to end.
for kind in "${kinds[@]}"; do
    scenario "$kind" long $((slots + 1)) -c "$slots" -n "$slots" --long-prompt 2048 --prompt-offset "$offset"
done
elapsed=$(( $(date +%s) - started ))

# ---------------------------------------------------------------- the table
print_table "$out" "$elapsed"
echo "raw results: $out" >&2
