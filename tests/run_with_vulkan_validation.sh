#!/bin/sh
# Runs the conformance binary's Vulkan cases (--quick) with the Khronos validation layer enabled by
# the backend (KF_VULKAN_VALIDATION=1: it enables VK_LAYER_KHRONOS_validation and installs a debug
# messenger that prints every warning/error as "kfuse: vulkan validation: ..." and fails the context).
# Fails if the layer is not installed, if the loader did not actually insert it, if the binary fails,
# or if its output holds any validation message: kfuse's "kfuse: vulkan validation:" lines or the
# layer's own "Validation Error" / "VUID-" text.
#
# VK_INSTANCE_LAYERS is deliberately not set: the loader reports that environment variable with a
# warning through the debug messenger, which the backend (rightly) counts as a validation failure.
# VK_LOADER_DEBUG=layer instead makes the loader log the layers it inserts, which proves the layer ran.
#
#   run_with_vulkan_validation.sh <conformance binary> [extra conformance args]
set -u
binary=$1
shift

# Where the Vulkan loader looks for explicit layers (VK_LAYER_PATH first, then the XDG data dirs).
layer_json=""
search="${VK_LAYER_PATH:-}:${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/vulkan/explicit_layer.d"
data_dirs="${XDG_DATA_DIRS:-/usr/local/share:/usr/share}"
old_ifs=$IFS
IFS=:
for dir in $data_dirs; do search="$search:$dir/vulkan/explicit_layer.d"; done
search="$search:/etc/xdg/vulkan/explicit_layer.d:/etc/vulkan/explicit_layer.d"
for dir in $search; do
  if [ -n "$dir" ] && [ -f "$dir/VkLayer_khronos_validation.json" ]; then
    layer_json="$dir/VkLayer_khronos_validation.json"
    break
  fi
done
IFS=$old_ifs
if [ -z "$layer_json" ]; then
  echo "FAIL the Khronos validation layer is not installed (no VkLayer_khronos_validation.json in $search);" \
       "install vulkan-validationlayers (tools/bootstrap.sh does)"
  exit 1
fi
echo "validation layer: $layer_json"

log="${TEST_TMPDIR:-${TMPDIR:-/tmp}}/vulkan_validation.$$.log"
KF_VULKAN_VALIDATION=1 VK_LOADER_DEBUG=layer "$binary" --backend=vulkan --quick "$@" >"$log" 2>&1
status=$?
# The loader's layer log is long; show the conformance lines, the inserted layers and any message.
grep -v '^LAYER:' "$log" | grep -v -E '^(DEBUG|INFO) \| LAYER:' || true
grep -E 'Insert(ed)? (instance|device) layer' "$log" || true

messages=$(grep -c -E 'kfuse: vulkan validation:|Validation Error|VUID-' "$log")
inserted=$(grep -c -E 'Insert(ed)? instance layer "?VK_LAYER_KHRONOS_validation' "$log")
rm -f "$log"
if [ "$status" -ne 0 ]; then
  echo "FAIL conformance under the validation layer exited with status $status"
  exit 1
fi
if [ "$inserted" -eq 0 ]; then
  echo "FAIL the loader never inserted VK_LAYER_KHRONOS_validation (KF_VULKAN_VALIDATION=1 did not enable it)"
  exit 1
fi
if [ "$messages" -ne 0 ]; then
  echo "FAIL $messages validation message line(s) above"
  exit 1
fi
echo "PASS vulkan conformance ran clean under the validation layer"
