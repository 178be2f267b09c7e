#!/usr/bin/env bash
# One-call GPU validation for a lent GPU machine (DEVELOPERS.md "A GPU is rare"), in the order
# PTX-FACTS.md asks for. Prepare here, run there:
#
#   here:  bash scripts/gpu-validate.sh --prepare    (builds .gpu-bundle with $NVCC or the pinned nvcc via
#          ../shared/tools/gpu-bundle.sh, strips debug info and keeps only the executables
#          with GPU work plus a compute-sanitizer wheel, so it fits the device tool's 64 MiB
#          carry limit; records the commit in .gpu-bundle/COMMIT)
#   there: bash scripts/gpu-validate.sh "$OUT"       (carry .gpu-bundle; cargo not needed)
#
# Steps (each under `timeout`; the whole run is budgeted to GV_BUDGET_S seconds, default 480,
# so give the device tool a timeout_s of at least that plus a minute):
#   0. environment: gpu.txt (nvidia-smi: card, driver, CUDA version), info.txt (asa-lth info),
#      commit.txt (.gpu-bundle/COMMIT: the commit the bundle was built from)
#   1. layout probes: probe.log (mma.sp fragments and metadata, tests/gemm24.rs),
#      probe-attention.log (mma.sync m16n8k16 fragments, tests/attention_fused.rs),
#      probe-ldmatrix.log and probe-wgmma-sp.log (sm_90 only; tests/gemm24_tuned.rs) vs the
#      PTX-ISA emulators — if one fails, fix the emulator's [figure] tables before anything else
#   2. every test of the bundled executables (GPU skips are failures, ASA_LTH_REQUIRE_GPU=1):
#      test-gpu-<exe>.log (tests matching gpu_, one at a time) and test-cpu-<exe>.log (the rest)
#   3. compute-sanitizer memcheck, then racecheck, on the gpu_ tests of every bundled executable
#      (at most GV_SANITIZER_S = 150 s in all; the 50-step loss curve is skipped):
#      sanitizer-<tool>-<exe>.log
#   4. training throughput: `asa-lth train` on cuda and cpu at the default model (L2 H2 d128
#      B16 T128), vocab 153 (synthetic corpus) and 33,278 (a generated WikiText-2-format corpus
#      with exactly that vocabulary): train-*/results.json, train-*.log
#   5. PyTorch peers (when torch with CUDA imports): peer-torch-train-{cuda-bf16,cuda-f32,cpu}.json
#      (benches/peers/torch_train.py, same model and shapes), peer-torch-topk.json
#   6. attention: `asa-lth bench attention` (GPU sweep, quick CPU subset): bench-asa-lth.json;
#      with benches/peers/torch_attention.py, SDPA and FlexAttention on the same masks:
#      peer-attention/*.json
#   7. 2:4 GEMM: `asa-lth bench gemm24` (GPU sweep: tuned mma.sp, wgmma.sp on sm_90, cuBLASLt,
#      cuSPARSELt when it loads): bench-gemm24.json; benches/peers/torch_gemm24.py (torch dense,
#      semi-structured cuSPARSELt and CUTLASS): peer-gemm24/*.json
#   8. gpu-validation.md (rewritten after every step, so a run cut short still leaves one): the
#      summary a session commits as results/gpu-validation-<card>.md
# Exit status 0 only when everything ran and passed.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
sanitizer_pin=nvidia-cuda-sanitizer-api==13.0.85 # matches the pinned nvcc 13.0 (DESIGN.md §5)
if [[ ${1:-} == --prepare ]]; then
  set -eo pipefail
  cd "$root"
  # The pinned toolkit unless NVCC names another (e.g. a 12.x nvcc for a machine whose
  # driver predates CUDA 13: `asa-lth info` there says so).
  NVCC=${NVCC:-$(bash scripts/install-cuda-toolchain.sh --sass | tail -n 1)}
  export NVCC
  bash "$root/../shared/tools/gpu-bundle.sh" >/dev/null 2>&1 || bash "$root/../shared/tools/gpu-bundle.sh"
  # Keep the test executables that hold GPU checks (a `fn gpu_` in tests/NAME.rs) and the
  # CLI; drop debug info (symbols stay, so backtraces still name functions).
  keep=$(grep -l 'fn gpu_' tests/*.rs | xargs -n 1 basename | sed 's/\.rs$//' | sort)
  for t in .gpu-bundle/tests/*; do
    n=$(basename "$t")
    grep -qx "${n%-*}" <<<"$keep" || rm -f "$t"
  done
  for k in $keep; do
    compgen -G ".gpu-bundle/tests/$k-*" >/dev/null || { echo "gpu-validate: tests/$k.rs did not build" >&2; exit 1; }
  done
  [[ -x .gpu-bundle/bin/asa-lth ]] || { echo "gpu-validate: the asa-lth CLI did not build" >&2; exit 1; }
  # The criterion benches have no GPU cases yet (CPU figures would only spend device time);
  # keep them once src/bench/ grows CUDA cases.
  rm -f .gpu-bundle/benches/*
  strip --strip-debug .gpu-bundle/tests/* .gpu-bundle/bin/*
  # compute-sanitizer, for a GPU machine without a CUDA toolkit (PyTorch's wheels bring none):
  # the wheel itself (14 MB) is carried and unpacked there.
  wheels=.cuda-toolchain/wheels
  if ! compgen -G "$wheels/nvidia_cuda_sanitizer_api-*.whl" >/dev/null; then
    mkdir -p "$wheels"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$wheels" "$sanitizer_pin" >&2 ||
      echo "gpu-validate: could not fetch $sanitizer_pin; the GPU machine's own compute-sanitizer will be needed" >&2
  fi
  mkdir -p .gpu-bundle/sanitizer
  cp "$wheels"/nvidia_cuda_sanitizer_api-*.whl .gpu-bundle/sanitizer/ 2>/dev/null || true
  # Every executable embeds the same kernel fatbin: packed together they shrink ~8x (54 -> 6
  # MB). The run unpacks them outside the tree. gpu-bundle.sh's run.sh is replaced by this script.
  tar -C .gpu-bundle -cf - tests bin | xz -T2 -6 >.gpu-bundle/exe.tar.xz
  rm -rf .gpu-bundle/tests .gpu-bundle/bin .gpu-bundle/benches .gpu-bundle/run.sh
  {
    echo "commit $(git rev-parse HEAD)"
    echo "dirty_files $(git status --porcelain | wc -l)"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nvcc $("$NVCC" --version | grep -o 'V[0-9][0-9.]*' | head -n 1)"
    echo "rustc $(rustc --version)"
    git status --porcelain | head -n 40 | sed 's/^/status /'
  } >.gpu-bundle/COMMIT
  du -sh .gpu-bundle
  tar -tJvf .gpu-bundle/exe.tar.xz
  ls -l .gpu-bundle/sanitizer
  size=$(du -sm .gpu-bundle | cut -f1)
  ((size < 60)) || { echo "gpu-validate: .gpu-bundle is ${size} MiB, over the 60 MiB this script allows" >&2; exit 1; }
  exit 0
fi

out=${1:-./gpu-logs}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
# The executables: packed by --prepare (unpacked outside the tree, so the tree stays small
# enough to carry again), or a plain gpu-bundle.sh folder.
if [[ -f .gpu-bundle/exe.tar.xz ]]; then
  bdir=$(mktemp -d "${TMPDIR:-/tmp}/gv-bundle.XXXXXX")
  python3 -c '
import sys, tarfile
t = tarfile.open(sys.argv[1])
if hasattr(tarfile, "data_filter"):
    t.extractall(sys.argv[2], filter="data")
else:
    t.extractall(sys.argv[2])' .gpu-bundle/exe.tar.xz "$bdir" 2>/dev/null ||
    tar -C "$bdir" -xJf .gpu-bundle/exe.tar.xz ||
    { echo "gpu-validate: cannot unpack .gpu-bundle/exe.tar.xz" >&2; exit 2; }
  tmpb=$bdir
elif [[ -d .gpu-bundle/tests ]]; then
  bdir=.gpu-bundle
else
  echo "gpu-validate: no .gpu-bundle (bash scripts/gpu-validate.sh --prepare)" >&2
  exit 2
fi
export CARGO_MANIFEST_DIR=$root ASA_LTH_REQUIRE_GPU=1 RUST_BACKTRACE=1
budget=${GV_BUDGET_S:-480}
start=$SECONDS
# Seconds for the next step: at most $1, and never into the last $2 (default 20) of the budget.
tmo() {
  local left=$((budget - (SECONDS - start) - ${2:-20}))
  ((left < 5)) && left=5
  echo $(($1 < left ? $1 : left))
}
fail=0
steps=$out/steps.tsv # step <tab> status <tab> seconds <tab> note — read by the summary
: >"$steps"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$steps"; }
# run_step NAME CAP LOG CMD...: run under timeout, log, record; returns the command's status.
run_step() {
  local name=$1 cap=$2 log=$3 t0=$SECONDS rc
  shift 3
  timeout -k 5 "$(tmo "$cap")" "$@" >"$log" 2>&1
  rc=$?
  local st=ok
  ((rc == 124 || rc == 137)) && st=TIMEOUT
  ((rc != 0 && rc != 124 && rc != 137)) && st="FAILED(rc=$rc)"
  record "$name" "$st" $((SECONDS - t0)) "$(basename "$log")"
  [[ $st == ok ]] || fail=1
  return $rc
}
test_bin() { compgen -G "$bdir/tests/$1-*" | head -n 1; }
cli=$bdir/bin/asa-lth

sumpy=$(mktemp "${TMPDIR:-/tmp}/gv-summary.XXXXXX.py")
cat >"$sumpy" <<'EOF'
import glob, json, os, re, sys

out, fail, final = sys.argv[1], sys.argv[2] != "0", sys.argv[3] == "final"
def read(name, default=""):
    try:
        return open(os.path.join(out, name)).read()
    except OSError:
        return default

steps = [l.rstrip("\n").split("\t") for l in read("steps.tsv").splitlines() if l.strip()]
gpu = read("gpu.txt").strip().splitlines()
card = gpu[1].split(",")[0].strip() if len(gpu) > 1 and "," in gpu[1] else "no GPU"
L = []
w = L.append
w(f"# GPU validation: {card}\n")
w("Produced by `scripts/gpu-validate.sh` in one call on a lent GPU machine (bundle built with "
  "`bash scripts/gpu-validate.sh --prepare`, carried as `.gpu-bundle`).\n")
w("| | |\n|---|---|")
w(f"| card, driver | `{' / '.join(gpu[1:]) if len(gpu) > 1 else (gpu[0] if gpu else 'n/a')}` |")
commit = dict(l.split(" ", 1) for l in read("commit.txt").splitlines() if " " in l and not l.startswith("status "))
w(f"| bundle commit | `{commit.get('commit', 'unknown')}` ({commit.get('dirty_files', '?')} uncommitted files at build time; built {commit.get('built', '?')}, nvcc {commit.get('nvcc', '?')}) |")
w(f"| tree here | `{commit.get('tree_commit', '?')}` |")
w(f"| command | `{read('command.txt').strip()}` |")
w(f"| python / torch | {read('python.txt').strip().replace(chr(10), '; ')} |")
overall = "FAILURES (see below)" if fail else "all passed"
if not final:
    overall = "INCOMPLETE: the run stopped before its end (so far: " + overall + ")"
w(f"| overall | **{overall}** |\n")
info = read("info.txt").strip()
w("## `asa-lth info --verbose`\n\n```\n" + info[:4000] + "\n```\n")

w("## Layout probes\n")
for name, log in (("mma.sp m16n8k32 (gemm24)", "probe.log"),
                  ("mma.sync m16n8k16 (attention_fused)", "probe-attention.log"),
                  ("ldmatrix x4, x2, x2.trans, x4.trans (gemm24_tuned)", "probe-ldmatrix.log"),
                  ("wgmma.sp m64n128k32, sm_90 only (gemm24_tuned)", "probe-wgmma-sp.log")):
    res = re.findall(r"^test result: .*$", read(log), re.M)
    w(f"- {name}: {res[-1] if res else 'no result (' + log + ')'}")
w("")

w("## Tests (ASA_LTH_REQUIRE_GPU=1: a GPU skip is a failure)\n")
w("| executable | part | passed | failed | ignored | status | failures |\n|---|---|---|---|---|---|---|")
status = {s[0]: s for s in steps}
def test_key(log):
    base = os.path.basename(log)[:-4].split("-", 2)
    return (base[2], base[1] != "gpu")
for log in sorted(glob.glob(os.path.join(out, "test-*.log")), key=test_key):
    base = os.path.basename(log)[:-4]
    part, exe = base.split("-", 2)[1], base.split("-", 2)[2]
    text = read(os.path.basename(log))
    m = re.findall(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", text)
    p, f, i = m[-1] if m else ("?", "?", "?")
    failed = re.findall(r"^test (\S+) \.\.\. FAILED", text, re.M)
    st = status.get(base, ["", "?", "", ""])[1]
    w(f"| {exe} | {part} | {p} | {f} | {i} | {st} | {', '.join(failed[:6])} |")
w("")

w("## compute-sanitizer\n")
w(read("sanitizer-version.txt").strip() or read("sanitizer-missing.log").strip() or "not run")
w("")
slogs = sorted(glob.glob(os.path.join(out, "sanitizer-*-*.log")))
if slogs:
    w("| tool | executable | status | summary |\n|---|---|---|---|")
    for log in slogs:
        base = os.path.basename(log)[:-4]
        _, tool, exe = base.split("-", 2)
        text = read(os.path.basename(log))
        sums = sorted(set(re.findall(r"(?:ERROR|RACECHECK) SUMMARY: [^\n]*", text)))
        st = status.get(base, ["", "?"])[1]
        w(f"| {tool} | {exe} | {st} | {'; '.join(sums) or 'no summary line'} |")
for s in steps:
    if s[0].startswith("sanitizer") and s[1] in ("NOT RUN", "SKIPPED"):
        w(f"- {s[0]}: {s[1]} ({s[3]})")
w("")

w("## Training throughput (default model: 2 layers, 2 heads, d_model 128, B 16 × T 128)\n")
w("asa-lth: `asa-lth train --device D --steps N --warmup 0 --eval-every 0 --checkpoint-every 0` "
  "(tokens/s over all N steps as results.json reports it: CUDA events on the GPU, wall clock "
  "on the CPU; *warm* = (300 − 50) steps' tokens / the difference of the two runs' train_seconds, "
  "i.e. without the first steps' set-up). Vocab 33,278 runs on a generated WikiText-2-format "
  "corpus with exactly that vocabulary. PyTorch: `benches/peers/torch_train.py` (eager, same "
  "model, random tokens, CUDA events after warm-up; bf16 = autocast bf16 matmuls with f32 "
  "master weights, as asa-lth's cuBLASLt path; f32 = no TF32).\n")
runs = {}
for d in sorted(glob.glob(os.path.join(out, "train-*/results.json"))):
    try:
        runs[os.path.basename(os.path.dirname(d))[6:]] = json.load(open(d))
    except Exception as e:
        runs[os.path.basename(os.path.dirname(d))[6:]] = {"error": str(e)}
w("| run | device | vocab | steps | tokens/s | train s | last loss | valid ppl | peak device MiB | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|")
def mib(x):
    return f"{x / 2**20:,.0f}" if isinstance(x, (int, float)) else "—"
for s in steps:
    if not s[0].startswith("train-"):
        continue
    label = s[0][6:]
    r = runs.get(label)
    if not r or "error" in r:
        err = [l.strip() for l in read(s[3]).splitlines() if "rror" in l][:1]
        w(f"| {label} | — | — | — | {s[1]} | {err[0][:160] if err else ''} | | | | |")
        continue
    curve = r.get("train_curve") or [{}]
    dm = r.get("device_memory") or {}
    vp = r.get("final_valid_perplexity")
    w(f"| {label} | {r.get('device', '?')} | {r.get('model', {}).get('vocab', '?')} | {r.get('steps_done')} "
      f"| {r.get('tokens_per_sec', 0):,.0f} | {r.get('train_seconds', 0):.2f} | {curve[-1].get('loss', float('nan')):.4f} "
      f"| {vp if vp is None else f'{vp:.2f}'} | {mib(dm.get('peak_bytes'))} | {mib(r.get('peak_rss_bytes'))} |")
w("")

def warm(kind):
    a, b = runs.get(f"cuda-{kind}-50"), runs.get(f"cuda-{kind}-300")
    if not a or not b or "error" in a or "error" in b:
        return None
    dt = b["train_seconds"] - a["train_seconds"]
    cfg = b.get("config") or {}
    toks = (b["steps_done"] - a["steps_done"]) * cfg.get("batch", 16) * cfg.get("seq_len", 128)
    return toks / dt if dt > 0 else None

peers = {}
for j in sorted(glob.glob(os.path.join(out, "peer-torch-train-*.json"))):
    try:
        rep = json.load(open(j))
    except Exception:
        continue
    tag = os.path.basename(j)[len("peer-torch-train-"):-5]
    for fig in rep.get("figures", []):
        peers[(tag, fig["name"].split("/")[1])] = fig

w("| vocab | asa-lth cuda (warm) | asa-lth cuda (all steps) | asa-lth cpu | PyTorch eager cuda bf16 | PyTorch eager cuda f32 | PyTorch cpu f32 | asa-lth / PyTorch bf16 |\n|---|---|---|---|---|---|---|---|")
for kind, cpu_label in (("synthetic", "cpu-synthetic-50"), ("wt2vocab", "cpu-wt2vocab-10")):
    wr = warm(kind)
    allr = (runs.get(f"cuda-{kind}-300") or {}).get("tokens_per_sec")
    cpur = (runs.get(cpu_label) or {}).get("tokens_per_sec")
    pb = peers.get(("cuda-bf16", kind), {})
    pf = peers.get(("cuda-f32", kind), {})
    pc = peers.get(("cpu", kind), {})
    def fmt(x, spread=None, mem=None):
        if not x:
            return "—"
        s = f"{x:,.0f}"
        if spread is not None:
            s += f" ±{100 * spread:.0f}%"
        if mem:
            s += f" ({mem / 2**20:,.0f} MiB)"
        return s
    ratio = f"**{wr / pb['throughput']:.2f}×**" if wr and pb.get("throughput") else "—"
    w(f"| {kind} | {fmt(wr)} | {fmt(allr)} | {fmt(cpur)} "
      f"| {fmt(pb.get('throughput'), pb.get('rel_spread'), pb.get('peak_memory_bytes'))} "
      f"| {fmt(pf.get('throughput'), pf.get('rel_spread'), pf.get('peak_memory_bytes'))} "
      f"| {fmt(pc.get('throughput'), pc.get('rel_spread'))} | {ratio} |")
asa = runs.get("cuda-synthetic-asa-300")
if asa and "error" not in asa:
    w(f"\nWith ASA attention masks (`--attn-mask asa`, synthetic, 300 steps): "
      f"{asa['tokens_per_sec']:,.0f} tokens/s over all steps.")
# GPU vs CPU loss at the same step (same seed and data; bf16 matmuls on the GPU).
cmp = []
for kind, cpu_label in (("synthetic", "cpu-synthetic-50"), ("wt2vocab", "cpu-wt2vocab-10")):
    g, c = runs.get(f"cuda-{kind}-50"), runs.get(cpu_label)
    if g and c and "error" not in g and "error" not in c and c.get("train_curve"):
        n = c["train_curve"][-1]["step"]
        gl = next((r["loss"] for r in g.get("train_curve", []) if r["step"] == n), None)
        if gl is not None:
            cmp.append(f"{kind} step {n}: cuda {gl:.4f} vs cpu {c['train_curve'][-1]['loss']:.4f}")
if cmp:
    w("\nTraining loss, GPU vs CPU at the same step (same seed and batches): " + "; ".join(cmp) + ".")
w("")

w("## 2:4 GEMM: asa-lth bench gemm24\n")
w("FLOPs counted as the dense 2·M·N·K for every variant, so FLOP/s ratios are speed-ups "
  "(src/bench/gemm24_cases.rs). sparse_bf16: the tuned mma.sp kernels; wgmma_bf16: the "
  "experimental Hopper kernel; dense_bf16: cuBLASLt; cusparselt_bf16: cuSPARSELt. PyTorch "
  "peers in peer-gemm24/ (compare with `asa-lth bench gemm24 --baseline FILE`).\n")
g24 = [l for l in read("bench-gemm24.log").splitlines()
       if l.startswith("gemm24/") and " cpu " not in l]
w("```\n" + ("\n".join(g24[:60]) if g24 else "no GPU gemm24 figures (see bench-gemm24.log)") + "\n```\n")
w("## Attention: asa-lth bench attention vs PyTorch SDPA / FlexAttention\n")
w("TFLOP/s counted on the allowed (mask ∧ causal) pairs, as src/bench/attention_cases.rs counts "
  "them; fused = the default Ops path (mma.sync kernels; tile lists built once per mask and "
  "cached, so the warm-up call pays for them), ref = the "
  "reference kernels; SDPA and Flex from benches/peers/torch_attention.py on the same masks "
  "(`peer-attention/`).\n")
def load_figs(path):
    try:
        return json.load(open(path)).get("figures", [])
    except Exception:
        return None
ours = load_figs(os.path.join(out, "bench-asa-lth.json"))
peer_figs = {}
for pj in sorted(glob.glob(os.path.join(out, "peer-attention", "*.json"))):
    tag = "flex" if "flex" in os.path.basename(pj) else "sdpa" if "sdpa" in os.path.basename(pj) else os.path.basename(pj)
    for f in load_figs(pj) or []:
        peer_figs[(tag, f["name"])] = f
if ours is None:
    w("no asa-lth report (see bench-asa-lth.log)")
else:
    g = {f["name"]: f for f in ours if f.get("device") != "cpu" and f.get("kernel") == "attention"}
    if not g:
        w(f"No GPU attention figures ({len(ours)} CPU figures in bench-asa-lth.json).")
    else:
        def tf(f):
            if not f:
                return "—"
            return f"{f['throughput'] / 1e12:.1f}" if f.get("unit") == "FLOP/s" else f"{f['throughput']:.3g} {f.get('unit')}"
        w("| case | fused TFLOP/s | ms | ref | SDPA | Flex | fused / SDPA | fused / Flex |\n|---|---|---|---|---|---|---|---|")
        for name in sorted(g):
            parts = name.split("/")
            if len(parts) < 3 or parts[1].endswith("_ref"):
                continue
            f = g[name]
            ref = g.get("/".join([parts[0], parts[1] + "_ref"] + parts[2:]))
            sd, fx = peer_figs.get(("sdpa", name)), peer_figs.get(("flex", name))
            r = lambda p: f"{f['throughput'] / p['throughput']:.2f}×" if p and p.get("throughput") else "—"
            w(f"| {name} | {tf(f)} | {1e3 * f['median_secs']:.3f} | {tf(ref)} | {tf(sd)} | {tf(fx)} | {r(sd)} | {r(fx)} |")
w("")

w("## Steps\n\n| step | status | seconds | log / note |\n|---|---|---|---|")
for s in steps:
    w("| " + " | ".join((s + ["", "", "", ""])[:4]) + " |")
w("")
w("## Peer reports (JSON)\n")
for j in sorted(glob.glob(os.path.join(out, "peer-*.json"))):
    w(f"### {os.path.basename(j)}\n\n```json\n{read(os.path.basename(j)).strip()}\n```\n")
if not glob.glob(os.path.join(out, "peer-*.json")):
    w("none (torch with CUDA not importable, or the peers failed: see the steps above)\n")
if glob.glob(os.path.join(out, "peer-attention", "*.json")):
    w("The attention peers' reports (many figures) are in `peer-attention/` beside this file.\n")
w("Logs of every step are in the same output folder (test-*.log, sanitizer-*.log, train-*.log, "
  "peer-*.log).")
open(os.path.join(out, "gpu-validation.md"), "w").write("\n".join(L) + "\n")
print(os.path.join(out, "gpu-validation.md"))
EOF
trap 'rm -rf "$sumpy" "${tmpb:-}"' EXIT
# Rewrite gpu-validation.md from what is there so far (after every step, so a run cut short
# still leaves a summary).
summarize() { python3 "$sumpy" "$out" "$fail" "$1" >/dev/null || echo "gpu-validate: summary failed" >&2; }

echo "== 0. environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,compute_cap --format=csv 2>&1 ||
    echo "nvidia-smi: not found or failed"
  nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' || true
} >"$out/gpu.txt"
cat "$out/gpu.txt"
{
  if [[ -f .gpu-bundle/COMMIT ]]; then cat .gpu-bundle/COMMIT; else echo "commit (no .gpu-bundle/COMMIT)"; fi
  echo "tree_commit $(git rev-parse HEAD 2>/dev/null || echo 'no .git here')"
} >"$out/commit.txt"
head -n 2 "$out/commit.txt"
gpu_present=0
nvidia-smi -L >/dev/null 2>&1 && gpu_present=1
timeout 60 "$cli" info --verbose >"$out/info.txt" 2>&1 || echo "(asa-lth info exited $?)" >>"$out/info.txt"
cat "$out/info.txt"
echo "bash scripts/gpu-validate.sh $*" >"$out/command.txt"
{
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -n 1
  python3 --version 2>&1
} >"$out/python.txt"

summarize partial
echo "== 1. layout probes (mma.sp, mma.sync fragments vs the PTX-ISA emulators)"
probe() { # NAME EXE TEST LOG
  local bin
  bin=$(test_bin "$2")
  if [[ -z $bin ]]; then
    record "$1" "MISSING" 0 "no $2 executable in the bundle"
    fail=1
    return
  fi
  if ! run_step "$1" 60 "$out/$4" "$bin" "$3" --exact --nocapture; then
    echo "PROBE FAILED: the emulator's [figure] tables disagree with this GPU (or no GPU) — see $out/$4"
  fi
  tail -n 4 "$out/$4"
}
probe probe-mma-sp gemm24 gpu_mma_sp_layout_probe_matches_the_emulator probe.log
probe probe-mma-sync attention_fused gpu_mma_probe_matches_the_emulator probe-attention.log
probe probe-ldmatrix gemm24_tuned gpu_ldmatrix_probe_matches_the_emulator probe-ldmatrix.log
probe probe-wgmma-sp gemm24_tuned gpu_wgmma_sp_probe_matches_the_emulator probe-wgmma-sp.log

summarize partial
echo "== 2. every bundled test (GPU skips are failures)"
for t in "$bdir"/tests/*; do
  n=$(basename "$t")
  n=${n%-*}
  # gpu_* one at a time (they share the card, and one provokes an out-of-memory error); the
  # rest in parallel. Together they are every test of the executable, each once.
  for part in gpu cpu; do
    if [[ $part == gpu ]]; then args=(gpu_ --test-threads=1); cap=150; else args=(--skip gpu_); cap=120; fi
    if run_step "test-$part-$n" "$cap" "$out/test-$part-$n.log" "$t" "${args[@]}"; then
      echo "$part $n: $(grep '^test result' "$out/test-$part-$n.log" | tail -n 1)"
    else
      echo "FAILED: $part $n"
      grep -E '^test .* FAILED|panicked|^test result' "$out/test-$part-$n.log" | head -n 20
    fi
  done
done

summarize partial
echo "== 3. compute-sanitizer (memcheck, racecheck) on the gpu_* tests"
cs=""
whl=$(compgen -G ".gpu-bundle/sanitizer/nvidia_cuda_sanitizer_api-*.whl" | head -n 1)
if [[ -n $whl ]]; then
  sd=$(mktemp -d)
  if python3 -m zipfile -e "$whl" "$sd" 2>/dev/null; then
    sb=$(compgen -G "$sd/nvidia/cu*/bin" | head -n 1)
    if [[ -n $sb ]]; then
      cp -n "$sb"/../lib/*.so "$sb"/ 2>/dev/null || true # the toolkit's layout: one folder
      chmod +x "$sb/compute-sanitizer"
      "$sb/compute-sanitizer" --version >/dev/null 2>&1 && cs=$sb/compute-sanitizer
    fi
  fi
fi
if [[ -z $cs ]]; then
  for c in compute-sanitizer /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    command -v "$c" >/dev/null 2>&1 && { cs=$(command -v "$c"); break; }
  done
fi
if [[ -z $cs ]]; then
  echo "compute-sanitizer not found (no wheel in the bundle, none installed): skipped" | tee "$out/sanitizer-missing.log"
  record sanitizer SKIPPED 0 "compute-sanitizer not found"
  fail=1
elif ((gpu_present == 0)); then
  echo "no GPU (nvidia-smi -L failed): sanitizer skipped" | tee "$out/sanitizer-missing.log"
  record sanitizer SKIPPED 0 "no GPU"
  fail=1
else
  "$cs" --version 2>&1 | tail -n 1 >"$out/sanitizer-version.txt"
  san_budget=${GV_SANITIZER_S:-150}
  san_start=$SECONDS
  for tool in memcheck racecheck; do
    for t in "$bdir"/tests/*; do
      n=$(basename "$t")
      n=${n%-*}
      # At most GV_SANITIZER_S (default 150) seconds in all, memcheck first.
      if ((SECONDS - san_start > san_budget - 15 || budget - (SECONDS - start) < 60)); then
        record "sanitizer-$tool-$n" "NOT RUN" 0 "device-time budget spent"
        fail=1
        continue
      fi
      run_step "sanitizer-$tool-$n" "$((san_budget - (SECONDS - san_start) < 60 ? san_budget - (SECONDS - san_start) : 60))" "$out/sanitizer-$tool-$n.log" "$cs" --tool "$tool" --error-exitcode 9 \
        "$t" gpu_ --test-threads=1 --skip gpu_loss_curve_matches_cpu_over_50_steps
      echo "compute-sanitizer $tool $n: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitizer-$tool-$n.log" | sort | uniq -c | tr '\n' ' ')"
    done
  done
  rm -rf "${sd:-/nonexistent}"
fi

summarize partial
echo "== 4. training throughput (asa-lth train; default model)"
wt=$(mktemp -d)
# A WikiText-2-format corpus whose training text has exactly 33,276 distinct words, so the
# vocabulary (plus <unk>, <eos>) is WikiText-2's 33,278: tokens/s depends on the shapes only.
python3 - "$wt" <<'EOF'
import random, sys
d, n = sys.argv[1], 33276
words = [f"w{i:05d}" for i in range(n)]
rng = random.Random(1)
train = words * 2
rng.shuffle(train)
with open(f"{d}/wiki.train.tokens", "w") as f:
    for i in range(0, len(train), 20):
        f.write(" " + " ".join(train[i:i + 20]) + " \n")
for split in ("valid", "test"):
    with open(f"{d}/wiki.{split}.tokens", "w") as f:
        for i in range(40):
            f.write(" " + " ".join(rng.choice(words) for _ in range(20)) + " \n")
EOF
train_run() { # LABEL DEVICE STEPS CORPUS-ARGS...
  local label=$1 dev=$2 n=$3
  shift 3
  run_step "train-$label" 120 "$out/train-$label.log" "$cli" train --device "$dev" --steps "$n" \
    --warmup 0 --eval-every 0 --checkpoint-every 0 --quiet --out "$out/train-$label" "$@"
  rm -f "$out/train-$label"/checkpoint*.safetensors # up to 50 MB each; results.json is the point
  echo "train-$label: $(grep -E 'tokens/s|rror' "$out/train-$label.log" | tail -n 2 | tr '\n' ' ')"
}
syn=(--corpus synthetic)
wt2=(--corpus wikitext2 --data "$wt")
# Two lengths on the GPU: the difference gives the warm rate (first-step set-up excluded).
train_run cuda-synthetic-50 cuda 50 "${syn[@]}"
train_run cuda-synthetic-300 cuda 300 "${syn[@]}"
train_run cuda-wt2vocab-50 cuda 50 "${wt2[@]}"
train_run cuda-wt2vocab-300 cuda 300 "${wt2[@]}"
train_run cuda-synthetic-asa-300 cuda 300 "${syn[@]}" --attn-mask asa
train_run cpu-synthetic-50 cpu 50 "${syn[@]}"
train_run cpu-wt2vocab-10 cpu 10 "${wt2[@]}"
rm -rf "$wt"

summarize partial
echo "== 5. PyTorch peers (same model and shapes, same card)"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  pk=(--samples 7 --min-sample-secs 0.2 --warmup-secs 0.5)
  run_step peer-torch-train-cuda-bf16 90 "$out/peer-torch-train-cuda-bf16.log" \
    python3 benches/peers/torch_train.py --device cuda --precision bf16 "${pk[@]}" --json "$out/peer-torch-train-cuda-bf16.json"
  run_step peer-torch-train-cuda-f32 90 "$out/peer-torch-train-cuda-f32.log" \
    python3 benches/peers/torch_train.py --device cuda --precision f32 "${pk[@]}" --json "$out/peer-torch-train-cuda-f32.json"
  run_step peer-torch-train-cpu 90 "$out/peer-torch-train-cpu.log" \
    python3 benches/peers/torch_train.py --device cpu --samples 3 --min-sample-secs 0.2 --warmup-secs 0.3 \
    --json "$out/peer-torch-train-cpu.json"
  run_step peer-torch-topk 120 "$out/peer-torch-topk.log" \
    python3 benches/peers/torch_topk.py --samples 7 --json "$out/peer-torch-topk.json"
  grep -h -E 'tokens/s|B/s|FLOP/s|report:' "$out"/peer-torch-*.log | head -n 30
else
  echo "torch with CUDA not importable: peers skipped"
  record peers SKIPPED 0 "torch with CUDA not importable ($(head -n 1 "$out/python.txt"))"
  fail=1
fi

summarize partial
echo "== 6. attention: asa-lth bench attention (GPU sweep; quick CPU subset) and the SDPA/FlexAttention peers"
# The CPU half of the sweep is CI's business: the quick subset only.
ASA_LTH_BENCH_ATTN=quick run_step bench-asa-lth 150 "$out/bench-asa-lth.log" "$cli" bench attention --samples 5 \
  --min-sample-ms 20 --json "$out/bench-asa-lth.json"
summarize partial
grep -E '^attention/' "$out/bench-asa-lth.log" | grep -v ' cpu ' | head -n 12
if [[ -f benches/peers/torch_attention.py ]] && "$cli" bench --help 2>/dev/null | grep -q -- --dump-masks; then
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    md=$(mktemp -d)
    run_step attention-dump-masks 60 "$out/attention-dump-masks.log" "$cli" bench attention --dump-masks "$md"
    # Separately, so a slow torch.compile of FlexAttention cannot cost the SDPA figures.
    for impl in sdpa flex; do
      run_step "peer-torch-attention-$impl" 120 "$out/peer-torch-attention-$impl.log" python3 benches/peers/torch_attention.py \
        --masks "$md" --out-dir "$out/peer-attention" --impl "$impl" --samples 5 --min-sample-ms 20
      summarize partial
    done
    rm -rf "$md"
  else
    record peer-torch-attention SKIPPED 0 "torch with CUDA not importable"
    fail=1
  fi
else
  record peer-torch-attention SKIPPED 0 "no benches/peers/torch_attention.py or no bench --dump-masks in this build"
fi

summarize partial
echo "== 7. 2:4 GEMM: asa-lth bench gemm24 (GPU sweep, quick CPU subset) vs cuBLASLt, cuSPARSELt and the PyTorch peers"
ASA_LTH_BENCH_GEMM24=quick run_step bench-gemm24 120 "$out/bench-gemm24.log" "$cli" bench gemm24 --samples 5 \
  --min-sample-ms 20 --json "$out/bench-gemm24.json"
grep -E '^gemm24/' "$out/bench-gemm24.log" | grep -v ' cpu ' | head -n 12
if [[ -f benches/peers/torch_gemm24.py ]] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  run_step peer-torch-gemm24 90 "$out/peer-torch-gemm24.log" python3 benches/peers/torch_gemm24.py \
    --out-dir "$out/peer-gemm24" --samples 5 --min-sample-ms 20
else
  record peer-torch-gemm24 SKIPPED 0 "torch with CUDA not importable"
fi

echo "== 8. summary"
summarize final
echo "$out/gpu-validation.md"
echo "gpu-validate: $([[ $fail == 0 ]] && echo all passed || echo FAILURES, see "$out") ($((SECONDS - start)) s)"
exit $fail
