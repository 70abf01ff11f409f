#!/usr/bin/env bash
# Print the path of the CPU test image of workflow/envs/tensorflow.def, building it only when no
# image of the same definition, pins and build arguments is cached on this machine: the cache
# key is a hash of those, so CI builds once per machine and an edit to any of them rebuilds.
# Offline from Debian's mirror (no registry needed). Cache: $MNISTFLOW_IMAGE_CACHE, else
# ~/.cache/mnistflow. Usage: bash tests/container_image.sh   (from anywhere; prints the path)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${MNISTFLOW_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mnistflow}
args=(--build-arg bootstrap=debootstrap)
# A TLS-inspecting proxy (as here) needs the host's CA bundle inside the build for pip.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	args+=(--bind /etc/ssl/certs:/mnt --build-arg pip_cert=/mnt/ca-certificates.crt)
fi
key=$(cd "$repo" && { cat workflow/envs/tensorflow.def workflow/envs/tensorflow-container.txt workflow/envs/tensorflow-gpu.txt constraints.txt; echo "${args[*]}"; } | sha256sum | cut -c1-16)
image=$cache/mnist-tensorflow-cpu-$key.sif
mkdir -p "$cache"
# One build at a time (parallel test workers, other checkouts on this machine).
exec 9>"$cache/.lock"
flock 9
if [ ! -s "$image" ]; then
	command -v apptainer >/dev/null || {
		echo "apptainer is not installed: bash ../shared/vendor/apptainer/apptainer_up.sh" >&2
		exit 1
	}
	start=$SECONDS
	partial=$image.partial.sif
	rm -f "$partial"
	(cd "$repo" && apptainer build --fakeroot --force "${args[@]}" "$partial" workflow/envs/tensorflow.def) >"$cache/build-$key.log" 2>&1 || {
		tail -30 "$cache/build-$key.log" >&2
		echo "image build failed: $cache/build-$key.log" >&2
		exit 1
	}
	mv "$partial" "$image"
	echo "built $image in $((SECONDS - start)) s ($(du -m "$image" | cut -f1) MiB)" >&2
fi
# Bounded cache: each use marks an image; images of old definitions unused for 14 days go.
touch "$image"
find "$cache" -maxdepth 1 -name 'mnist-tensorflow-cpu-*.sif' -mtime +14 -delete
echo "$image"
