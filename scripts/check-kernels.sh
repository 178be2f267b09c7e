#!/usr/bin/env bash
# Static checks of the CUDA kernels (DESIGN.md §5, §6.3); needs nvcc, and cuobjdump for SASS
# (bash scripts/install-cuda-toolchain.sh --sass installs both next to each other).
#
#   scripts/check-kernels.sh [FILE.cu ...]        (default: every kernels/*.cu)
#
# For every file and every checked arch (sm_80 and sm_90; sm_90a instead of sm_90 for a file
# with the line `// asa-lth: arch=sm_90a`) it compiles a cubin with build.rs's flags (-O3
# -lineinfo -std=c++17, warnings as errors, which nvcc also applies to ptxas) plus `-Xptxas -v`,
# then:
#   1. prints one row per kernel: registers, shared memory, stack frame, spill stores/loads;
#   2. fails if a HOT kernel has a stack frame (local memory) or spills. A kernel is hot when
#      its file has a line
#          // asa-lth: hot KERNEL
#      (KERNEL: the extern "C" name, or a substring of a mangled C++ name);
#   3. dumps SASS with cuobjdump and fails if a kernel lacks an instruction class it declares:
#          // asa-lth: sass-expect KERNEL INSTR [ARCH ...]
#      INSTR is matched as a fixed string against that kernel's SASS (e.g. HMMA.SP,
#      HGMMA.SP.64x8x32); the optional ARCHs (e.g. sm_90a) limit the check to those arches.
# A marker naming a kernel that ptxas never reported is an error too (catches typos).
# Environment: NVCC (default: nvcc on PATH), CUOBJDUMP (default: next to NVCC, then PATH),
# ASA_LTH_CHECK_ARCHS (default "sm_80 sm_90").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
args=()
for a in "$@"; do args+=("$(realpath -- "$a")"); done
cd "$root"

nvcc=${NVCC:-$(command -v nvcc || true)}
if [[ -z $nvcc || ! -x $nvcc ]]; then
  echo "check-kernels: nvcc not found; set NVCC (NVCC=\$(bash scripts/install-cuda-toolchain.sh --sass | tail -n 1))" >&2
  exit 2
fi
cuobjdump=${CUOBJDUMP:-}
if [[ -z $cuobjdump ]]; then
  if [[ -x $(dirname "$nvcc")/cuobjdump ]]; then cuobjdump=$(dirname "$nvcc")/cuobjdump
  else cuobjdump=$(command -v cuobjdump || true); fi
fi
if [[ -z $cuobjdump || ! -x $cuobjdump ]]; then
  echo "check-kernels: cuobjdump not found; run bash scripts/install-cuda-toolchain.sh --sass or set CUOBJDUMP" >&2
  exit 2
fi
read -r -a base_archs <<< "${ASA_LTH_CHECK_ARCHS:-sm_80 sm_90}"

if ((${#args[@]})); then files=("${args[@]}"); else files=(kernels/*.cu); fi
[[ -e ${files[0]} ]] || { echo "check-kernels: no .cu files" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags=(-cubin -O3 -lineinfo -std=c++17 -Werror all-warnings -Xptxas -v -I "$root/kernels")

failures=()
rows=()
"$nvcc" --version | tail -n 2 | head -n 1 | sed 's/^/nvcc: /'

for f in "${files[@]}"; do
  base=$(basename "$f" .cu)
  archs=("${base_archs[@]}")
  if grep -qxF '// asa-lth: arch=sm_90a' "$f"; then
    for i in "${!archs[@]}"; do
      if [[ ${archs[i]} == sm_90 ]]; then archs[i]=sm_90a; fi
    done
  fi
  mapfile -t hot < <(sed -n 's|^[[:space:]]*// asa-lth: hot[[:space:]]\+\([^[:space:]]\+\).*|\1|p' "$f")
  mapfile -t expects < <(sed -n 's|^[[:space:]]*// asa-lth: sass-expect[[:space:]]\+||p' "$f")
  declare -A seen_hot=() seen_expect=()

  for arch in "${archs[@]}"; do
    cubin="$tmp/$base.$arch.cubin"
    log="$tmp/$base.$arch.log"
    if ! "$nvcc" "${flags[@]}" -arch="$arch" "$f" -o "$cubin" > "$log" 2>&1; then
      cat "$log" >&2
      failures+=("$f [$arch]: nvcc failed (output above)")
      continue
    fi
    # kernel regs smem stack spill_st spill_ld, one line per entry function.
    report=$(awk '
      /Compiling entry function/ { match($0, /function \047[^\047]+\047/); k = substr($0, RSTART + 10, RLENGTH - 11);
                                   regs[k] = 0; smem[k] = 0; order[++n] = k; cur = k; next }
      /Function properties for/  { sub(/.*Function properties for /, ""); props = $0; next }
      /bytes stack frame/        { if (props == cur) {
                                     for (i = 1; i <= NF; i++) { if ($i == "stack") st[cur] = $(i-2);
                                       if ($i == "stores,") ss[cur] = $(i-3); if ($i == "loads") sl[cur] = $(i-3) } } next }
      /Used [0-9]+ registers/    { match($0, /Used [0-9]+ registers/); regs[cur] = substr($0, RSTART + 5, RLENGTH - 15);
                                   if (match($0, /[0-9]+ bytes smem/)) smem[cur] = substr($0, RSTART, RLENGTH - 11); next }
      END { for (i = 1; i <= n; i++) { k = order[i];
              printf "%s %s %s %s %s %s\n", k, regs[k], smem[k], st[k] + 0, ss[k] + 0, sl[k] + 0 } }' "$log")
    if [[ -z $report ]]; then
      failures+=("$f [$arch]: no entry functions in the ptxas report")
      continue
    fi
    sass="$tmp/$base.$arch.sass"
    "$cuobjdump" -sass "$cubin" > "$sass"

    while read -r k regs smem stack sst sld; do
      is_hot=no
      for h in "${hot[@]}"; do
        if [[ $k == *"$h"* ]]; then is_hot=yes; seen_hot[$h]=1; fi
      done
      status=ok
      if [[ $is_hot == yes ]] && ((stack > 0 || sst > 0 || sld > 0)); then
        status=FAIL
        failures+=("$f [$arch] $k: hot kernel uses local memory (stack $stack B, spill stores $sst B, loads $sld B)")
      fi
      # SASS of this kernel: lines from its "Function : name" header to the next header.
      ksass=$(awk -v k="$k" '/^[[:space:]]*Function : / { on = ($3 == k); next } on' "$sass")
      checked=""
      for e in "${expects[@]}"; do
        read -r ek instr earchs <<< "$e"
        [[ $k == *"$ek"* ]] || continue
        if [[ -n ${earchs:-} && " $earchs " != *" $arch "* ]]; then seen_expect[$e]=1; continue; fi
        seen_expect[$e]=1
        if grep -qF -- "$instr" <<< "$ksass"; then
          checked+="${checked:+,}$instr"
        else
          status=FAIL
          checked+="${checked:+,}!$instr"
          failures+=("$f [$arch] $k: expected SASS instruction class $instr not found")
        fi
      done
      rows+=("$(printf '%-22s %-7s %4s %6s %6s %6s %6s  %-3s %-5s %s' \
        "$k" "$arch" "$regs" "$smem" "$stack" "$sst" "$sld" "$is_hot" "$status" "${checked:--}")")
    done <<< "$report"
  done

  for h in "${hot[@]}"; do
    [[ -n ${seen_hot[$h]:-} ]] || failures+=("$f: '// asa-lth: hot $h' names no kernel in the file")
  done
  for e in "${expects[@]}"; do
    [[ -n ${seen_expect[$e]:-} ]] || failures+=("$f: '// asa-lth: sass-expect $e' names no kernel in the file")
  done
  unset seen_hot seen_expect
done

printf '%-22s %-7s %4s %6s %6s %6s %6s  %-3s %-5s %s\n' \
  kernel arch regs smem stack spillS spillL hot check sass-expect
for r in "${rows[@]}"; do echo "$r"; done

if ((${#failures[@]})); then
  echo >&2
  printf 'check-kernels: FAIL: %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-kernels: OK (${#files[@]} file(s), ${#rows[@]} kernel/arch row(s))"
