#!/usr/bin/env bash
# One call on a GPU machine: install q16 offline, run the CUDA tests, run the GPU benchmarks.
#
#   make device-wheels                      # here, with network: wheels/ (< 64 MiB)
#   bash scripts/device_check.sh            # there, from the repository root, no network
#
# The machine is expected to have torch, torchvision, lightning, numpy, scipy, scikit-learn,
# pyarrow and pillow (torch 2.11 / torchvision 0.26 and later). What it lacks of
# scripts/device_requirements.txt, and q16 itself, is installed from wheels/ into .device-site/
# (--no-deps: nothing the machine has is replaced, torch least of all) and put on PYTHONPATH.
# Then: the CUDA tests (`pytest -m gpu` over the files that have them), decoding per core and on
# the GPU (bench_decode.py), ViT-L/14 and ViT-B/16 end to end from ImageNet-like tar shards
# against the model alone and a one-image-at-a-time loop (bench_infer.py). Results go to
# $OUT/bench/ when $OUT is set (the device tool brings $OUT back), else results/bench/; the log
# to device_check.log beside them. Each step has its own time limit; the whole stays under
# 8 minutes. Without CUDA (a rehearsal on a CPU machine) every step runs, at small sizes and
# writing to a temporary folder, and the CUDA parts say they were skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
SITE=${SITE:-.device-site}
RESULTS=${OUT:+$OUT/bench}
RESULTS=${RESULTS:-results/bench}
mkdir -p "$RESULTS"
LOG="$RESULTS/device_check.log"
exec > >(tee "$LOG") 2>&1
START=$(date +%s)
FAILED=()
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/$SITE${PYTHONPATH:+:$PYTHONPATH}"

step() { echo; echo "== [$(( $(date +%s) - START ))s] $*"; }
BUDGET_S=${BUDGET_S:-465}  # the whole script, under 8 minutes with the kill grace
run() {  # run LIMIT_S NAME CMD...: a failing or timed-out step is reported, the next one runs
    local limit=$1 name=$2; shift 2
    local left=$(( BUDGET_S - ($(date +%s) - START) ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 15 ]; then
        echo "skipped: $name (the ${BUDGET_S}s budget is spent)"; FAILED+=("$name (skipped)")
        return 1
    fi
    timeout --kill-after=5 "$limit" "$@"
    local rc=$?
    if [ $rc -ne 0 ]; then
        FAILED+=("$name (exit $rc$([ $rc -eq 124 ] && echo ", over ${limit}s"))")
    fi
    return $rc
}

step "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'EOF'
import platform, torch, torchvision
print(f"python {platform.python_version()}, torch {torch.__version__}, torchvision {torchvision.__version__}")
print(f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none visible'}; "
      f"{__import__('os').cpu_count()} CPUs")
EOF
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$CUDA" != 1 ]; then
    echo "no CUDA device: rehearsal. The CUDA tests skip and the benchmarks run at small sizes"
    echo "into a temporary folder (under results/ only this log is written)"
    RESULTS=$(mktemp -d)
fi

step "install what is missing from $WHEELS/ into $SITE/ (no network, --no-deps)"
MISSING=$("$PY" - "$WHEELS" <<'EOF'
import importlib.metadata as md, pathlib, re, sys, warnings
warnings.simplefilter("ignore")  # pkg_resources' deprecation
wheels = pathlib.Path(sys.argv[1])
def norm(name): return re.sub(r"[-_.]+", "_", name).lower()
names = [re.split(r"[<>=!~ ]", line.strip())[0] for line in open("scripts/device_requirements.txt")
         if line.strip() and not line.startswith("#")]
names += ["antlr4-python3-runtime"]
found = {norm(p.name.split("-")[0]): p for p in wheels.glob("*.whl")}
if "q16" not in found:
    sys.exit(f"no q16 wheel in {wheels}/: run make device-wheels")
missing = [str(found["q16"])]  # always: the wheel is this working tree, built by device-wheels
for name in names:
    if name == "setuptools":
        try:
            import pkg_resources  # noqa: F401  (OpenAI's clip needs it)
            continue
        except ImportError:
            pass
    else:
        try:
            md.version(name)
            continue
        except md.PackageNotFoundError:
            pass
    if norm(name) not in found:
        sys.exit(f"{name} is not installed and not in {wheels}/: run make device-wheels")
    missing.append(str(found[norm(name)]))
print(" ".join(missing))
EOF
) || { echo "$MISSING"; exit 1; }
echo "installing: $(for w in $MISSING; do basename "$w" | cut -d- -f1-2; done | tr '\n' ' ')"
run 60 install "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    --upgrade $MISSING || exit 1
run 60 import "$PY" -c "
import torch, open_clip, hydra, webdataset, q16.infer, q16.train, q16.pixels
print('q16', q16.__file__, '| open_clip', open_clip.__version__, '| torch', torch.__version__)
" || exit 1

step "CUDA tests (pytest -m gpu)"
GPU_TESTS=$(grep -rlE "mark\.gpu|pytestmark = pytest\.mark\.gpu" tests | sort | tr '\n' ' ')
run 150 "CUDA tests" "$PY" -m pytest -m gpu -rs -q -p no:cacheprovider $GPU_TESTS

step "decoding: PIL vs fast per core, and batched nvJPEG on the GPU (bench_decode.py)"
if [ "$CUDA" = 1 ]; then
    run 60 decode "$PY" scripts/bench_decode.py --images 256 --repeats 3 --gpu-images 1024 \
        --out-dir "$RESULTS"
else
    run 90 decode "$PY" scripts/bench_decode.py --images 8 --repeats 1 --gpu-images 8 \
        --batch-device cpu \
        --out-dir "$RESULTS"
fi

step "end to end from ImageNet-like tar shards vs the model alone vs one image at a time"
WORK=$(mktemp -d)
NPROC=$("$PY" -c "import os; print(os.cpu_count())")
if [ "$CUDA" = 1 ]; then
    RUNS=("ViT-L-14 infer.decode=fast" "ViT-B-16 infer.decode=gpu" "ViT-B-16 infer.decode=fast")
    E2E=(--images 6144 --shard-size 256 --batch-size 256 --num-workers $(( NPROC - 1 ))
         --naive-images 64 --rss-shards 0 --repeats 2 --photos --work-dir "$WORK")
else
    # ViT-L-14 runs at 0.3 images/s on a shared 2-core CPU: the same code on the tiny CLIP
    RUNS=("q16-tiny infer.decode=fast" "q16-tiny infer.decode=gpu")
    echo "rehearsal: q16-tiny (random, 32 px) instead of ViT-L-14 and ViT-B-16, 64 images"
    E2E=(--images 64 --shard-size 16 --batch-size 16 --num-workers 1 --naive-images 4
         --rss-shards 0 --repeats 1 --photos --work-dir "$WORK")
fi
for spec in "${RUNS[@]}"; do
    read -r model decode <<< "$spec"
    run 110 "e2e $model $decode" "$PY" scripts/bench_infer.py --model "$model" "${E2E[@]}" \
        --out-dir "$RESULTS" "$decode"
done
rm -rf "$WORK"

step "results in $RESULTS"
"$PY" - "$RESULTS" <<'EOF'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    data = json.loads(path.read_text())
    goals = data.get("targets_met") or data.get("goals") or {}
    print(f"{path.name}: {json.dumps(goals)}")
    if "ratios" in data:
        print(f"  model only {data['a_model_only_images_per_s']:.0f}/s, end to end "
              f"{data['b_end_to_end_images_per_s']:.0f}/s, one at a time "
              f"{data['c_naive_images_per_s']:.1f}/s, data wait "
              f"{data.get('b_data_wait_fraction')}: {json.dumps(data['ratios'])}")
    for kind in ("imagenet_like", "img2dataset_like"):
        if kind in data:
            k = data[kind]
            print(f"  {kind}: PIL {k['pil_images_per_s']}/s, fast {k['fast_images_per_s']}/s "
                  f"per core ({k['fast_over_pil']}x), GPU {json.dumps(k['gpu'])[:160]}")
EOF
echo
echo "== done in $(( $(date +%s) - START ))s"
if [ ${#FAILED[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${FAILED[@]}"
    exit 1
fi
[ "$CUDA" = 1 ] && echo "all steps passed" || echo "all steps passed (rehearsal: CUDA parts skipped)"
