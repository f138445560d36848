# kiln: sourced by the GPU-machine scripts (gpu_profile.sh, gpu_kernels.sh) with B set to a
# packed build (bin/kiln, lib/, extra-libs.tar.xz; see gpu_session.sh): puts the build's and
# PyTorch's cuDNN/cuBLAS libraries on the loader path, unpacks the extra libraries, and sets
# K (the kiln tool) and PY (the Python that has PyTorch).
site=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH="$B/lib:$site/cudnn/lib:$site/cublas/lib:/usr/local/cuda/lib64:/tmp/kiln-extra-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p /tmp/kiln-extra-libs && tar -C /tmp/kiln-extra-libs -xJf "$B/extra-libs.tar.xz"
K="$B/bin/kiln"
PY=${PYTHON:-python3}
