#!/bin/bash
# Stages everything the GPU host run needs into .gpu/ (git-ignored), built here, so that host only
# unpacks runtime packages and runs binaries:
#   .gpu/lib/      libkfuse.so and any other shared library the binaries need from bazel-bin
#   .gpu/bin/      demo, kfbench
#   .gpu/bench/    torch_peers.py (torch on the same GPU) and combine.py (kfbench + torch -> one table)
#   .gpu/tests/    every test binary of //tests and the test shell scripts
#   .gpu/tests.list  each test target with the arguments Bazel runs it with
#   .gpu/debs/     runtime .debs the host lacks (Vulkan/OpenCL loaders, CLBlast, the validation layer)
#   .gpu/host-setup.sh, .gpu/run_gpu.sh (the script to run there)
#
# Usage (here, from anywhere in the repository):   tools/gpu_stage.sh
# Then on the GPU host, from the repository root:  bash .gpu/run_gpu.sh
#   ($OUT gets gpu_run.log, bench.json (kfbench), torch.json (torch_peers.py) and table.md (combine.py))
#
# The device tool copies the working tree plus carried ignored paths (64 MiB in all); .gpu must be
# carried, so the script checks that .gpu stays under 40 MB and, with the repository's files, under
# 60 MB. It replaces only its own staged folders; others' (.gpu/diag, ...) are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly STAGE=.gpu
readonly SIZE_LIMIT_BYTES=$((60 * 1000 * 1000))
readonly STAGE_LIMIT_BYTES=$((40 * 1000 * 1000))

# Only what runs there: the shared library (not the static archive), the programs and the tests.
bazel build //:libkfuse.so //:demo //bench:kfbench //bench:kfbench_mm //tests:all

bin=$(bazel info bazel-bin 2>/dev/null)
rm -rf "$STAGE/lib" "$STAGE/bin" "$STAGE/tests" "$STAGE/bench"
mkdir -p "$STAGE/lib" "$STAGE/bin" "$STAGE/tests" "$STAGE/debs" "$STAGE/bench"

# Copies a built ELF file, without debug sections (they are most of its size and useless there).
stage_elf() {
  local from=$1 to=$2
  cp -L "$from" "$to"
  chmod u+w "$to"
  strip --strip-debug "$to"
}

stage_elf "$bin/libkfuse.so" "$STAGE/lib/libkfuse.so"
if [ -f "$bin/tools/demo" ]; then demo="$bin/tools/demo"; else demo="$bin/demo"; fi
stage_elf "$demo" "$STAGE/bin/demo"
stage_elf "$bin/bench/kfbench" "$STAGE/bin/kfbench"
stage_elf "$bin/bench/kfbench_mm" "$STAGE/bin/kfbench_mm"
# The torch peers and the table that joins both runs are Python run by the host's python3 (which has
# torch and triton); nothing to build.
install -m 0644 bench/torch_peers.py bench/torch_mm_peers.py bench/combine.py "$STAGE/bench/"

# Test binaries: executable ELF files directly in bazel-bin/tests (not runfiles trees, objects, or
# the launcher scripts Bazel writes for sh_test).
test_count=0
for file in "$bin"/tests/*; do
  [ -f "$file" ] && [ -x "$file" ] || continue
  case "$file" in *.so | *.a | *.o | *.params | *.runfiles_manifest) continue ;; esac
  if [ "$(head -c 4 "$file" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    stage_elf "$file" "$STAGE/tests/$(basename "$file")"
    test_count=$((test_count + 1))
  fi
done
for script in tests/*.sh; do
  [ -f "$script" ] && cp "$script" "$STAGE/tests/"
done

# The test targets and their arguments as Bazel would run them (the conformance binaries differ only
# in their args), one "name<TAB>command" line each, in .gpu/tests.list. $(rootpath X) / $(location X)
# become the staged copy of X: shared libraries in .gpu/lib, everything else in .gpu/tests.
bazel query 'tests(//tests:all)' --output=xml 2>/dev/null | python3 -c '
import re, shlex, sys, xml.etree.ElementTree as ET
def staged(label):
    name = label.split(":")[-1].split("/")[-1]
    return (".gpu/lib/" if name.endswith(".so") else ".gpu/tests/") + name
def expand(arg):
    return re.sub(r"\$\((?:rootpath|location|execpath) ([^)]+)\)", lambda m: staged(m.group(1)), arg)
for rule in ET.parse(sys.stdin).getroot().iter("rule"):
    name = rule.get("name").split(":")[-1]
    lists = {l.get("name"): l for l in rule.iter("list")}
    args = [expand(e.get("value")) for e in lists["args"].iter("string")] if "args" in lists else []
    if rule.get("class") == "sh_test":
        script = [e.get("value") for e in lists["srcs"].iter("label")][0].split(":")[-1]
        command = ["sh", ".gpu/tests/" + script] + args
    else:
        command = [".gpu/tests/" + name] + args
    print(name + "\t" + " ".join(shlex.quote(word) for word in command))
' | sort >"$STAGE/tests.list"

# Bazel links cc_test and cc_binary against shared libraries under bazel-bin/_solib_*/ found through
# a RUNPATH relative to the binary; on the host they sit in .gpu/lib (LD_LIBRARY_PATH, which the
# loader searches before RUNPATH).
for elf in "$STAGE"/bin/* "$STAGE"/tests/* "$STAGE"/lib/*; do
  [ "$(head -c 4 "$elf" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
  for needed in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$STAGE/lib/$needed" ] && continue
    found=$(find -L "$bin"/_solib_* -name "$needed" -print -quit 2>/dev/null || true)
    if [ -n "$found" ]; then stage_elf "$found" "$STAGE/lib/$needed"; fi
  done
done

# Runtime packages the host lacks, plus the Khronos validation layer for the Vulkan validation test.
/work/shared/gpu/fetch-runtime-debs.sh "$STAGE/debs" >/dev/null
if ! ls "$STAGE"/debs/vulkan-validationlayers_*.deb >/dev/null 2>&1; then
  (cd "$STAGE/debs" && apt-get download vulkan-validationlayers 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
fi
install -m 0755 /work/shared/gpu/host-setup.sh "$STAGE/host-setup.sh"

cat >"$STAGE/run_gpu.sh" <<'RUN_GPU'
#!/bin/bash
# Runs on the GPU host, from the repository root:  bash .gpu/run_gpu.sh [PART...]
# (written by tools/gpu_stage.sh). Parts: 'tests' runs the demo and every test, 'bench' kfbench, the
# torch peers and the combined table, 'mm' kfbench_mm (GEMM, attention) and torch's GEMM/attention
# peers, 'sanitize' compute-sanitizer (memcheck, racecheck, synccheck) over the CUDA GEMM and
# attention conformance cases; 'all' (the default) is tests, bench and mm. Parts run one after the
# other so that each call fits the device tool's 10-minute limit. Everything it prints also goes to $OUT/gpu_run.log; kfbench's
# results go to $OUT/bench.json, torch's (bench/torch_peers.py) to $OUT/torch.json, and the table
# joining them (bench/combine.py) to $OUT/table.md. Exits nonzero when any step failed.
set -uo pipefail
parts=" ${*:-all} "
[ "$parts" = " all " ] && parts=" tests bench mm "
for part in $parts; do
  case "$part" in tests | bench | mm | sanitize) ;; *) echo "usage: bash .gpu/run_gpu.sh [all|tests|bench|mm|sanitize]..." >&2; exit 2 ;; esac
done
OUT=${OUT:-$PWD/.gpu/out}
mkdir -p "$OUT"
root=$PWD
logs=$(mktemp -d /tmp/kfuse-gpu.XXXXXX)
steps=()

# step NAME TIMEOUT_S COMMAND...: runs one step with its output in the log and in $logs/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  echo
  echo "==== $name: $*"
  local start=$SECONDS status
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$logs/$name.log"
  status=${PIPESTATUS[0]}
  local verdict=ok
  [ "$status" -eq 124 ] && verdict="TIMEOUT after ${limit}s"
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && verdict="FAILED (exit $status)"
  steps+=("$(printf '%-34s %-22s %5ds' "$name" "$verdict" $((SECONDS - start)))")
  return 0
}

main() {
  source .gpu/host-setup.sh .gpu/debs
  export LD_LIBRARY_PATH=$root/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export KF_REQUIRE_BACKENDS=cpu,cuda,opencl,vulkan
  export KF_CACHE_DIR=/tmp/kfuse-cache

  echo "==== host"
  date -u '+%Y-%m-%dT%H:%M:%SZ'
  nvidia-smi -L || true
  command -v clinfo >/dev/null && clinfo -l
  command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null

  case "$parts" in *" tests "*) run_tests ;; esac
  case "$parts" in *" bench "*) run_bench ;; esac
  case "$parts" in *" mm "*) run_mm ;; esac
  case "$parts" in *" sanitize "*) run_sanitize ;; esac

  echo
  echo "==== summary"
  failed=0
  for line in "${steps[@]}"; do
    echo "  $line"
    case "$line" in *FAILED* | *TIMEOUT*) failed=$((failed + 1)) ;; esac
  done
  echo "  $(( ${#steps[@]} - failed )) steps ok, $failed failed"
  echo
  sed -n '/^summary:/,/^$/p' "$logs/kfbench.log" 2>/dev/null
  if [ -f "$OUT/table.md" ]; then
    echo "==== kfuse beside torch ($OUT/table.md)"
    cat "$OUT/table.md"
  fi
  rm -rf "$logs"
  [ "$failed" -eq 0 ]
}

run_tests() {
  step demo 120 .gpu/bin/demo

  # Every test target of //tests, with the arguments Bazel gives it (listed by tools/gpu_stage.sh).
  while IFS=$'\t' read -r name command; do
    step "$name" 240 sh -c "$command" </dev/null
  done <.gpu/tests.list

  echo
  echo "==== conformance lines per backend (all tests)"
  cat "$logs"/*.log | grep -h '^PASS op=\|^FAIL op=' |
    awk '{ kind = $1; backend = "-"; if (match($0, /backend=[^ ]+/)) backend = substr($0, RSTART + 8, RLENGTH - 8);
           backends[backend] = 1; count[backend, kind]++ }
         END { printf("%-10s %8s %8s\n", "backend", "PASS", "FAIL");
               for (b in backends) printf("%-10s %8d %8d\n", b, count[b, "PASS"], count[b, "FAIL"]) }'
  if grep -h '^FAIL op=' "$logs"/*.log >/dev/null; then
    echo "---- FAIL lines"
    grep -h '^FAIL op=' "$logs"/*.log | head -100
  fi
}

# GEMM and attention: kfuse on the GPU through every API beside cuBLAS (in kfbench_mm), the generic
# CUDA GEMM forced for comparison, then torch's FP8 GEMM and attention kernels.
run_mm() {
  step kfbench_mm 300 .gpu/bin/kfbench_mm --backend=cuda,opencl,vulkan --json="$OUT/mm.json"
  KF_CUDA_FORCE_GENERIC=1 step kfbench_mm_generic 120 .gpu/bin/kfbench_mm --backend=cuda --op=gemm \
    --json="$OUT/mm_generic.json"
  # Vulkan without its cooperative-matrix shaders (tiled GEMM and attention), for comparison.
  KF_VULKAN_COOPMAT=0 step kfbench_mm_vulkan_tiled 200 .gpu/bin/kfbench_mm --backend=vulkan \
    --json="$OUT/mm_vulkan_tiled.json"
  step torch_mm_peers 200 python3 .gpu/bench/torch_mm_peers.py --json="$OUT/torch_mm.json"
}

# compute-sanitizer over the quick GEMM and attention conformance cases on CUDA: the Hopper
# TMA/wgmma GEMM (selected on sm_90), then the generic mma.sync GEMM, and the attention kernels.
run_sanitize() {
  local sanitizer
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  local conformance=".gpu/tests/conformance --backend=cuda --quick"
  for tool in memcheck racecheck synccheck; do
    KF_CONFORMANCE_OPS=gemm,attention step "sanitize_$tool" 150 "$sanitizer" --tool "$tool" --error-exitcode 99 \
      --print-limit 20 $conformance
  done
  KF_CUDA_FORCE_GENERIC=1 KF_CONFORMANCE_OPS=gemm step sanitize_memcheck_generic 120 "$sanitizer" --tool memcheck \
    --error-exitcode 99 --print-limit 20 $conformance
}

run_bench() {
  # Hardware devices only: CUDA, and OpenCL / Vulkan on the NVIDIA GPU (not PoCL or the CPU backend).
  step kfbench 360 .gpu/bin/kfbench --backend=cuda,opencl,vulkan --gpu-only --json="$OUT/bench.json"
  # torch (eager and torch.compile) at the same shapes on the same GPU, right after kfbench, then one
  # table: kfuse per backend beside torch and the copy bandwidth.
  step torch_peers 300 python3 .gpu/bench/torch_peers.py --json="$OUT/torch.json"
  step combine 60 python3 .gpu/bench/combine.py "$OUT/bench.json" "$OUT/torch.json" --markdown="$OUT/table.md"
}

main 2>&1 | tee "$OUT/gpu_run.log"
exit "${PIPESTATUS[0]}"
RUN_GPU
chmod +x "$STAGE/run_gpu.sh"

# .gpu must stay out of git (it travels as a carried path).
if ! git check-ignore -q "$STAGE/run_gpu.sh"; then
  echo "/$STAGE/" >>"$(git rev-parse --git-path info/exclude)"
  echo "gpu_stage: added /$STAGE/ to $(git rev-parse --git-path info/exclude)"
fi

stage_bytes=$(du -sb "$STAGE" | cut -f1)
# (du complains about, and the pipeline fails on, files deleted from the work tree but still tracked.)
repo_bytes=$(git ls-files -z -c -o --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1 || true)
total=$((stage_bytes + repo_bytes))
echo "gpu_stage: $test_count test binaries, $(ls "$STAGE"/tests/*.sh 2>/dev/null | wc -l) test scripts," \
  "$(ls "$STAGE"/debs/*.deb | wc -l) debs; .gpu $((stage_bytes / 1000000)) MB +" \
  "repository $((repo_bytes / 1000000)) MB = $((total / 1000000)) MB (limit $((SIZE_LIMIT_BYTES / 1000000)) MB)"
if [ "$stage_bytes" -gt "$STAGE_LIMIT_BYTES" ]; then
  echo "gpu_stage: .gpu is $((stage_bytes / 1000000)) MB, over its $((STAGE_LIMIT_BYTES / 1000000)) MB share" >&2
  exit 1
fi
if [ "$total" -gt "$SIZE_LIMIT_BYTES" ]; then
  echo "gpu_stage: too large to carry to the GPU host" >&2
  exit 1
fi
echo "gpu_stage: on the GPU host, from the repository root: bash .gpu/run_gpu.sh"
