#!/usr/bin/env bash
# One-call GPU validation for a lent GPU machine (DEVELOPERS.md "A GPU is rare"), in the order
# PTX-FACTS.md asks for. Prepare here, run there:
#
#   here:  bash scripts/gpu-validate.sh --prepare    (builds .gpu-bundle with $NVCC or the pinned nvcc via
#          ../shared/tools/gpu-bundle.sh, strips debug info and keeps only the executables
#          with GPU work, so it fits the device tool's 64 MiB carry limit)
#   there: bash scripts/gpu-validate.sh "$OUT"       (carry .gpu-bundle; cargo not needed)
#
# Writes into OUTDIR: gpu.txt (card, driver), probe.log (the mma.sp layout probe — if it
# fails, fix the emulator's [figure] tables before anything else), test-*.log (every bundled
# test with ASA_LTH_REQUIRE_GPU=1),
# sanitizer-*.log (compute-sanitizer memcheck and racecheck on the GPU tests), and peer
# reports from the PyTorch scripts when torch with CUDA is installed. Summarise them under
# results/ with the card, driver, commit and this command.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${1:-} == --prepare ]]; then
  set -e
  cd "$root"
  # The pinned toolkit unless NVCC names another (e.g. a 12.x nvcc for a machine whose
  # driver predates CUDA 13: `asa-lth info` there says so).
  NVCC=${NVCC:-$(bash scripts/install-cuda-toolchain.sh --sass | tail -n 1)}
  export NVCC
  bash "$root/../shared/tools/gpu-bundle.sh" >/dev/null 2>&1 || bash "$root/../shared/tools/gpu-bundle.sh"
  # Keep the tests that hold GPU checks, the benches and the CLI; drop debug info (symbols stay,
  # so backtraces still name functions).
  for t in .gpu-bundle/tests/*; do
    case $(basename "$t") in gemm24-*|topk-*|cuda_build-*) ;; *) rm -f "$t" ;; esac
  done
  # The criterion benches have no GPU cases yet (CPU figures would only spend device time);
  # keep them once src/bench/ grows CUDA cases.
  rm -f .gpu-bundle/benches/*
  strip --strip-debug .gpu-bundle/tests/* .gpu-bundle/bin/*
  du -sh .gpu-bundle
  exit 0
fi
out=${1:-./gpu-logs}
mkdir -p "$out"
cd "$root"
[[ -d .gpu-bundle/tests ]] || { echo "gpu-validate: no .gpu-bundle (build it with ../shared/tools/gpu-bundle.sh)" >&2; exit 2; }
export CARGO_MANIFEST_DIR=$root ASA_LTH_REQUIRE_GPU=1 RUST_BACKTRACE=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
git rev-parse HEAD >>"$out/gpu.txt" 2>/dev/null || true
cat "$out/gpu.txt"
fail=0
test_bin() { ls .gpu-bundle/tests/"$1"-* 2>/dev/null | head -n 1; }

echo "== 1. layout probe (mma.sp fragments and metadata vs the PTX-ISA emulator)"
if ! "$(test_bin gemm24)" gpu_mma_sp_layout_probe_matches_the_emulator --exact --nocapture >"$out/probe.log" 2>&1; then
  fail=1
  echo "PROBE FAILED: the emulator's [figure] tables disagree with this GPU — see $out/probe.log"
fi
tail -n 5 "$out/probe.log"

echo "== 2. every bundled test (GPU skips are failures)"
for t in .gpu-bundle/tests/*; do
  n=$(basename "$t")
  if "$t" --test-threads=1 >"$out/test-$n.log" 2>&1; then
    tail -n 1 "$out/test-$n.log"
  else
    fail=1
    echo "FAILED: $n"
    tail -n 30 "$out/test-$n.log"
  fi
done

echo "== 3. compute-sanitizer on the GPU tests"
if command -v compute-sanitizer >/dev/null; then
  for t in gemm24 topk cuda_build; do
    bin=$(test_bin "$t")
    [[ -n $bin ]] || continue
    for tool in memcheck racecheck; do
      if ! compute-sanitizer --tool "$tool" --error-exitcode 9 "$bin" gpu_ --test-threads=1 \
        >"$out/sanitizer-$tool-$t.log" 2>&1; then
        fail=1
        echo "compute-sanitizer $tool $t: FAILED (see $out/sanitizer-$tool-$t.log)"
      else
        echo "compute-sanitizer $tool $t: $(grep -c 'ERROR SUMMARY: 0' "$out/sanitizer-$tool-$t.log") clean summaries"
      fi
    done
  done
else
  echo "compute-sanitizer not found: skipped" | tee "$out/sanitizer-missing.log"
fi

echo "== 4. PyTorch peers"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  python3 benches/peers/torch_topk.py --json "$out/peer-torch-topk.json" || fail=1
else
  echo "torch with CUDA not importable: peers skipped"
fi
echo "gpu-validate: $([[ $fail == 0 ]] && echo all passed || echo FAILURES, see $out)"
exit $fail
