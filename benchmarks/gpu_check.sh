#!/usr/bin/env bash
# The one prepared device check of the deep-net module, all results under one folder OUT:
#   1. benchmarks/deepnet_step.py on ResNet-18, batch 128, bf16 autocast, channels_last, fused SGD:
#      SGD vs our SAM vs the per-parameter-loop SAM, images/s, SAM/SGD, ours/loop, and the host
#      synchronisations CUDA's sync debug mode reports in 5 SAM steps       -> OUT/step.txt, step.json
#   2. 3 epochs of run_cifar --model resnet18 --method sam on the real CIFAR-10 (bf16, channels_last:
#      run_cifar's CUDA defaults): epoch time and test accuracy            -> OUT/cifar/, cifar.txt
#   3. the measured figures against the targets (SAM/SGD <= 2.05, ours/loop <= 0.9 over a full step,
#      a ResNet-18 SAM epoch <= 4 s, 0 host syncs)                          -> OUT/summary.txt
# On one GPU it takes a few minutes and at most 8 (each stage has a time limit).
#
# usage: benchmarks/gpu_check.sh [--tiny] [OUT]          (default OUT: results/gpu-check)
# --tiny, or no CUDA device: the same stages on the CPU in under a minute (the tiny CNN, a few steps,
# one epoch of 256 real images; the CIFAR stage is skipped, saying so, without the CIFAR-10 archive).
# Exit status: 0 done, 2 bad usage or a non-empty OUT (nothing written), else the failing stage's.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python}
tiny=0
out=results/gpu-check
for arg in "$@"; do
  case $arg in
    --tiny) tiny=1 ;;
    -*) echo "gpu_check.sh: error: unknown flag $arg (usage: benchmarks/gpu_check.sh [--tiny] [OUT])" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "gpu_check.sh: error: $out is not empty: choose another OUT or remove it" >&2
  exit 2
fi
if [ "$tiny" = 0 ] && ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check.sh: no CUDA device here: running the tiny CPU mode" >&2
  tiny=1
fi
if [ "$tiny" = 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}      # a shared CI machine: no spinning OpenMP threads
  step=(--device cpu --model tiny --opt-model tiny --batch 16 --steps 3 --opt-steps 3 --warmup 1)
  cifar=(--model tiny --epochs 1 --limit-train 256 --limit-test 128 --batch-size 32 --grad-subset 64 --device cpu)
  step_limit=60
  cifar_limit=60
else
  step=(--device cuda --model resnet18 --batch 128 --amp --channels-last --sync-debug)
  cifar=(--model resnet18 --epochs 3 --device cuda)
  step_limit=150
  cifar_limit=300
fi
mkdir -p "$out"
start=$(date +%s)
echo "== deepnet_step.py ${step[*]}"
timeout "$step_limit" "$python" benchmarks/deepnet_step.py "${step[@]}" --json "$out/step.json" | tee "$out/step.txt"
archive=$("$python" -c "from convergence.deepnet.data import default_cifar10_path; print(default_cifar10_path())")
if [ -f "$archive" ] || [ "$tiny" = 0 ]; then
  echo "== run_cifar ${cifar[*]} --method sam"
  timeout "$cifar_limit" "$python" -m experiments.run_cifar "${cifar[@]}" --method sam --no-progress --no-tensorboard \
    --out "$out/cifar" 2>&1 | tee "$out/cifar.txt"
else
  echo "== run_cifar skipped: no CIFAR-10 archive at $archive (set SAMCONV_CIFAR10)" | tee "$out/cifar.txt"
fi
"$python" - "$out" "$(( $(date +%s) - start ))" "$tiny" <<'EOF' | tee "$out/summary.txt"
import csv, json, statistics, sys
from pathlib import Path
out, seconds, tiny = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"


def ok(value, target):
    return "not comparable in tiny mode" if tiny else "meets" if value <= target else "MISSES"


step = json.loads((out / "step.json").read_text())
lines = [f"gpu_check on {step['device']} (torch {step['torch']}), {step['model']} batch {step['batch']}, "
         f"amp {step['amp']}, channels_last {step['channels_last']}; {seconds} s in all",
         f"images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in step["images_per_s"].items()),
         f"SAM/SGD step time {step['sam_over_sgd']:.3f} (target <= 2.05: {ok(step['sam_over_sgd'], 2.05)})",
         f"ours/loop full step {step['ours_over_loop']:.3f} (target <= 0.9: {ok(step['ours_over_loop'], 0.9)}; "
         f"floor {step['floor_over_loop']:.3f})",
         f"ours/loop optimizer alone {step['optimizer_only']['ours_over_loop']:.3f}",
         f"host syncs in 5 SAM steps: {step['host_syncs']} (target 0; CUDA only)"]
metrics = out / "cifar" / "metrics.csv"
if metrics.is_file():
    rows = list(csv.DictReader(metrics.open()))
    times = [float(r["epoch_time_s"]) for r in rows]
    steady = statistics.median(times[1:] or times)
    lines += [f"epoch {r['epoch']}: {float(r['epoch_time_s']):.2f} s training + {float(r['measure_time_s']):.2f} s "
              f"measuring, test accuracy {float(r['test_acc']):.4f}, ||grad F|| {float(r['grad_norm']):.3e}"
              for r in rows]
    lines.append(f"SAM epoch (median after the first) {steady:.2f} s (target <= 4 s for ResNet-18 in bf16: "
                 f"{ok(steady, 4.0)})")
else:
    lines.append("no CIFAR run (see cifar.txt)")
print("\n".join(lines))
EOF
echo "gpu_check: results in $out"
