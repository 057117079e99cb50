#!/bin/sh
# libkfuse.so must load on machines without any GPU runtime and expose only the public API:
#  - `readelf -d` lists no CUDA, OpenCL, Vulkan or CLBlast library as NEEDED (they are dlopen'ed);
#  - `nm -D --defined-only` lists only kf_* symbols (and does list the API, e.g. kf_rmsnorm).
#
#   shared_library_test.sh <path to libkfuse.so>
set -u
lib=$1
failed=0

needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "NEEDED: $(echo $needed)"
vendor=$(echo "$needed" | grep -i -E 'cuda|nvrtc|nvidia|opencl|vulkan|clblast')
if [ -n "$vendor" ]; then
  echo "FAIL libkfuse.so links vendor libraries: $(echo $vendor)"
  failed=1
else
  echo "PASS no vendor library among the NEEDED entries"
fi

exported=$(nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }')
others=$(echo "$exported" | grep -v '^kf_' | grep -v '^$')
if [ -n "$others" ]; then
  echo "FAIL symbols other than kf_* are exported:"
  echo "$others" | sed 's/^/  /'
  failed=1
else
  echo "PASS only kf_* symbols are exported ($(echo "$exported" | grep -c '^kf_') of them)"
fi
for symbol in kf_rmsnorm kf_devices kf_context_create kf_tensor_create kf_last_error kf_version; do
  if ! echo "$exported" | grep -q -x "$symbol"; then
    echo "FAIL $symbol is not exported"
    failed=1
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "shared_library_test: FAILED"
  exit 1
fi
echo "shared_library_test: passed"
