# Sourced by the GPU-host scripts: the libraries of the Debian packages that scripts/gpu-host.sh
# unpacks into /opt/deps (docs: ../shared/GPU-HOST.md). BLAS and LAPACK (OpenCV's core needs them)
# sit in their own folders, since dpkg -x runs no update-alternatives. Set before the build too: the
# linker also looks here for the libraries that OpenCV's own libraries need.
deps=/opt/deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$deps:$deps/blas:$deps/lapack:${LD_LIBRARY_PATH:-}
