#!/usr/bin/env bash
# The one-call GPU check: everything docs/GPU.md describes, in one command, for a
# machine with an NVIDIA GPU and no network (docs/GPU.md, "One command on an offline machine").
#
# Stages, each with its own time limit, each writing into the output folder as
# it finishes (a timeout keeps what ran):
#   0 env       the machine: nvidia-smi, Python, PyTorch, CUDA, packages      (always)
#   1 install   hashwfa and its requirements from a folder of wheels (pip --no-index)
#   2 tcnn      tiny-cuda-nn's PyTorch bindings: kept if they import, else a
#               build script is run on a local tiny-cuda-nn source (see docs/GPU.md)
#   3 parity    scripts/gpu_check.py parity: torch grid vs tcnn.Encoding
#               (vs the float64 torch grid when tcnn is missing)
#   4 bench     hashwfa-bench reference table on the GPU, tcnn and torch backends,
#               configs/recommended*.json (its own version) if any, and every
#               smooth interpolation the grid knows (torch grid on CUDA; V1 by
#               default, --smooth-versions), median of 3
#   5 encoding  scripts/bench_encoding.py on the GPU
#   6 pytest    the whole suite, with tiny-cuda-nn present
# (the most wanted results first: a stage cut short by the time limit is the last)
# Stages 1-6 need CUDA; without it they report "skipped: no CUDA".
#
# Output folder (at most 8 files, all at its top, so that it is quick to copy back):
#   report.txt  stage status lines and each stage's summary
#   env.txt     the environment in full (nvidia-smi, pip list)
#   setup.log   stages 1 and 2 (pip, the build)
#   parity.json, pytest.txt, bench.json, encoding.txt
# Exit status: 0 when no stage failed (skipped stages are not failures), 1
# when one failed or timed out, 2 on bad arguments.

set -u

usage() {
    cat <<'EOF'
usage: bash scripts/gpu_check.sh --out DIR [options]

  --out DIR          output folder (created; required)
  --wheelhouse DIR   folder of wheels to install from (default third_party/wheels)
  --tcnn-src DIR     local tiny-cuda-nn source (default third_party/tiny-cuda-nn)
  --build-hook FILE  script that builds and installs the tcnn bindings,
                     called as: bash FILE TCNN_SRC WHEELHOUSE (default
                     third_party/build_tcnn.sh)
  --skip LIST        comma-separated stage names or numbers to skip
                     (install,tcnn,parity,bench,encoding,pytest or 1-6)
  --budget SECONDS   wall-clock limit of the whole script (default 560);
                     each stage gets at most its own limit and what is left
  --smooth-versions V  versions timed with each smooth interpolation (default 1;
                     e.g. 0,1,2,3,4,5,6: each costs about as much as a version
                     of the reference table)
  --quick            small sizes everywhere (a smoke test of the script)
  --device cpu       run the GPU stages on the CPU instead: a smoke test of
                     this script where there is no GPU (with --skip install,tcnn:
                     stage 1 would pip-install into the current environment)
  -h, --help         this text
EOF
}

OUT_DIR=""
WHEELHOUSE="third_party/wheels"
TCNN_SRC="third_party/tiny-cuda-nn"
BUILD_HOOK="third_party/build_tcnn.sh"
SKIP=""
BUDGET=560
QUICK=0
SMOOTH_VERSIONS=1
DEVICE=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --out|--wheelhouse|--tcnn-src|--build-hook|--skip|--budget|--device|--smooth-versions)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "gpu_check.sh: $1 needs a value" >&2; usage >&2; exit 2
            fi
            case "$1" in
                --out) OUT_DIR="$2" ;;
                --wheelhouse) WHEELHOUSE="$2" ;;
                --tcnn-src) TCNN_SRC="$2" ;;
                --build-hook) BUILD_HOOK="$2" ;;
                --skip) SKIP="$2" ;;
                --budget) BUDGET="$2" ;;
                --device) DEVICE="$2" ;;
                --smooth-versions) SMOOTH_VERSIONS="$2" ;;
            esac
            shift 2 ;;
        --quick) QUICK=1; shift ;;
        *) echo "gpu_check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
if [ -z "$OUT_DIR" ]; then
    echo "gpu_check.sh: --out DIR is required" >&2; usage >&2; exit 2
fi
case "$DEVICE" in
    cuda|cpu) ;;
    *) echo "gpu_check.sh: --device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac
case "$SMOOTH_VERSIONS" in
    ''|*[!0-6,]*) echo "gpu_check.sh: --smooth-versions must be versions 0-6 separated by commas, got '$SMOOTH_VERSIONS'" >&2; exit 2 ;;
esac
case "$BUDGET" in
    ''|*[!0-9]*) echo "gpu_check.sh: --budget must be a whole number of seconds, got '$BUDGET'" >&2; exit 2 ;;
esac

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's hashwfa whatever pip did
export PYTHONUNBUFFERED=1
START=$SECONDS
REPORT="$OUT_DIR/report.txt"
FAILED=0
: > "$REPORT"

say() { echo "$*" | tee -a "$REPORT"; }

skipped() {  # skipped NAME NUMBER
    local item
    for item in ${SKIP//,/ }; do
        if [ "$item" = "$1" ] || [ "$item" = "$2" ]; then return 0; fi
    done
    return 1
}

# run_stage NUMBER NAME LIMIT LOGFILE COMMAND...: runs COMMAND under timeout,
# output appended to LOGFILE, a status line into report.txt.
run_stage() {
    local number="$1" name="$2" limit="$3" log="$4"; shift 4
    local left=$((BUDGET - (SECONDS - START) - 5))
    if [ "$left" -lt "$limit" ]; then limit=$left; fi
    if [ "$limit" -le 0 ]; then
        say "stage $number $name: not run: the ${BUDGET} s budget is spent"
        FAILED=1; return 1
    fi
    local t0=$SECONDS rc
    echo "=== stage $number $name (limit ${limit} s): $*" >> "$log"
    timeout --kill-after=10 "$limit" "$@" >> "$log" 2>&1
    rc=$?
    local took=$((SECONDS - t0))
    if [ $rc -eq 0 ]; then
        say "stage $number $name: ok (${took} s)"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        say "stage $number $name: timed out after ${limit} s"; FAILED=1
    else
        say "stage $number $name: failed (exit $rc, ${took} s; see $(basename "$log"))"; FAILED=1
    fi
    return $rc
}

# ---- stage 0: environment (always) -----------------------------------------
say "# hashwfa GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
ENV_PY="$(timeout 60 "$PYTHON" scripts/gpu_check.py env 2>&1)"
{
    echo "## uname"; uname -a
    echo "## nproc"; nproc
    echo "## nvidia-smi"; timeout 20 nvidia-smi 2>&1 || echo "(nvidia-smi not available)"
    echo "## nvcc"; command -v nvcc && timeout 20 nvcc --version 2>&1 || echo "(nvcc not available)"
    echo "## CUDA toolkits"; ls -d /usr/local/cuda* 2>&1
    echo "## python"; echo "$ENV_PY"
    echo "## pip list"; timeout 60 "$PYTHON" -m pip list 2>&1
} > "$OUT_DIR/env.txt"
echo "$ENV_PY" >> "$REPORT"
say "stage 0 env: ok ($((SECONDS - START)) s)"

HAS_CUDA=0
if [ "$DEVICE" = cpu ]; then
    HAS_CUDA=1  # --device cpu: the GPU stages run on the CPU
    say "device: cpu (--device cpu), a smoke test of this script"
elif echo "$ENV_PY" | grep -qx "cuda available: yes"; then
    HAS_CUDA=1
fi

gpu_stage_allowed() {  # gpu_stage_allowed NUMBER NAME: 0 when the stage should run
    if skipped "$2" "$1"; then say "stage $1 $2: skipped: --skip"; return 1; fi
    if [ $HAS_CUDA -ne 1 ]; then say "stage $1 $2: skipped: no CUDA"; return 1; fi
    return 0
}

if [ $QUICK -eq 1 ]; then
    PARITY_ARGS="--points 1024 --quick"; BENCH_ARGS="--epochs 20 --repeats 1"; ENC_ARGS="--repeats 3"
else
    PARITY_ARGS="--points 65536"; BENCH_ARGS="--repeats 3"; ENC_ARGS="--repeats 20"
fi
HAS_TCNN=0
export PYTHON WHEELHOUSE TCNN_SRC BUILD_HOOK OUT_DIR BENCH_ARGS HAS_TCNN DEVICE SMOOTH_VERSIONS

# The stages' work, as functions that run under `timeout bash -c NAME`.
install_all() {
    if [ -d "$WHEELHOUSE" ]; then
        "$PYTHON" scripts/gpu_check.py wheels "$WHEELHOUSE" \
            --python "$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || return 1
        # pip resolves hashwfa's requirements against what is installed and
        # the wheelhouse; nothing is fetched.
        "$PYTHON" -m pip install --no-index --find-links "$WHEELHOUSE" --no-build-isolation -e . || return 1
    else
        echo "no wheelhouse at $WHEELHOUSE: installing hashwfa alone"
        "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation -e . || return 1
    fi
    "$PYTHON" -c "import astropy, commentjson, tqdm, matplotlib, hashwfa; print('imports ok: hashwfa', hashwfa.__version__, 'from', hashwfa.__file__)"
}
build_tcnn() {
    if "$PYTHON" -c "import tinycudann" >/dev/null 2>&1; then echo "tinycudann already imports"; return 0; fi
    if [ ! -f "$BUILD_HOOK" ]; then echo "tinycudann does not import and there is no build hook at $BUILD_HOOK"; return 1; fi
    if [ ! -d "$TCNN_SRC" ]; then echo "no tiny-cuda-nn source at $TCNN_SRC"; return 1; fi
    bash "$BUILD_HOOK" "$TCNN_SRC" "$WHEELHOUSE" || return 1
    "$PYTHON" -c "import tinycudann, torch; print('tinycudann', getattr(tinycudann, '__version__', '?'), 'imports; torch', torch.__version__)"
}
bench_runs() {
    local tmp rc=0 run name backend spec extra version
    tmp="$(mktemp -d)"
    local runs=()
    if [ "$HAS_TCNN" = 1 ]; then runs+=("tcnn tcnn -"); fi
    runs+=("torch torch -")
    for config in configs/recommended*.json; do  # the recommended configuration, once there is one
        if [ -f "$config" ]; then runs+=("$(basename "$config" .json) auto config:$config"); fi
    done
    # every smooth interpolation the grid knows (not Linear, not Nearest), torch grid
    for interpolation in $("$PYTHON" -c "from hashwfa.encodings.grid_config import INTERPOLATIONS as I; print(' '.join(i for i in I if i not in ('Linear', 'Nearest')))"); do
        runs+=("torch-$interpolation torch interpolation:$interpolation")
    done
    for run in "${runs[@]}"; do
        read -r name backend spec <<< "$run"
        case "$spec" in
            -) extra="" ;;
            interpolation:*) extra="--set encoding.interpolation=${spec#interpolation:} --versions $SMOOTH_VERSIONS" ;;
            config:*)  # that configuration's own version only
                version="$("$PYTHON" -c "import sys, commentjson; print(commentjson.load(open(sys.argv[1]))['encoding']['version'])" "${spec#config:}" 2>/dev/null)"
                extra="--config ${spec#config:}${version:+ --versions $version}" ;;
        esac
        echo "## hashwfa-bench $name: --device $DEVICE --backend $backend $BENCH_ARGS $extra"
        # shellcheck disable=SC2086  # the argument strings hold no spaces
        "$PYTHON" -m hashwfa.cli.bench --device "$DEVICE" --backend "$backend" $BENCH_ARGS $extra --json "$tmp/$name.json" || rc=1
        "$PYTHON" scripts/gpu_check.py merge-json "$tmp" "$OUT_DIR/bench.json"  # keeps finished runs on a timeout
    done
    rm -rf "$tmp"
    return $rc
}
export -f install_all build_tcnn bench_runs

# ---- stage 1: hashwfa and its wheels ---------------------------------------
if gpu_stage_allowed 1 install; then
    run_stage 1 install 120 "$OUT_DIR/setup.log" bash -c install_all
fi

# ---- stage 2: tiny-cuda-nn bindings -----------------------------------------
if gpu_stage_allowed 2 tcnn; then
    if run_stage 2 tcnn 400 "$OUT_DIR/setup.log" bash -c build_tcnn; then HAS_TCNN=1; fi
    tail -n 3 "$OUT_DIR/setup.log" >> "$REPORT"
fi
export HAS_TCNN

# ---- stage 3: parity ---------------------------------------------------------
if gpu_stage_allowed 3 parity; then
    CANDIDATE=tcnn
    if [ $HAS_TCNN -ne 1 ]; then CANDIDATE=torch64; say "stage 3 parity: no tiny-cuda-nn, so the torch grid vs itself in float64 on $DEVICE"; fi
    # shellcheck disable=SC2086
    run_stage 3 parity 90 "$OUT_DIR/parity.log" "$PYTHON" scripts/gpu_check.py parity --candidate "$CANDIDATE" \
        --device "$DEVICE" --json "$OUT_DIR/parity.json" $PARITY_ARGS
    grep -E "^(FAIL|ERROR|parity)" "$OUT_DIR/parity.log" | tail -n 40 >> "$REPORT"
    rm -f "$OUT_DIR/parity.log"  # parity.json holds every check; fewer files come back
fi

# ---- stage 4: the reference table on the GPU --------------------------------------
if gpu_stage_allowed 4 bench; then
    run_stage 4 bench 200 "$OUT_DIR/bench.txt" bash -c bench_runs
    grep -E "^(## |\| )" "$OUT_DIR/bench.txt" >> "$REPORT"
fi

# ---- stage 5: encoding throughput ---------------------------------------------
if gpu_stage_allowed 5 encoding; then
    # shellcheck disable=SC2086
    run_stage 5 encoding 60 "$OUT_DIR/encoding.txt" "$PYTHON" scripts/bench_encoding.py --device "$DEVICE" $ENC_ARGS
    grep -E "^(#|\|)" "$OUT_DIR/encoding.txt" >> "$REPORT"
fi

# ---- stage 6: pytest -----------------------------------------------------------
if gpu_stage_allowed 6 pytest; then
    run_stage 6 pytest 120 "$OUT_DIR/pytest.txt" "$PYTHON" -m pytest -q -ra -p no:cacheprovider tests
    tail -n 30 "$OUT_DIR/pytest.txt" | grep -E "passed|failed|error|SKIPPED|FAILED" >> "$REPORT"
fi

say "done in $((SECONDS - START)) s; $([ $FAILED -eq 0 ] && echo 'no stage failed' || echo 'some stage failed')"
exit $FAILED
