# Sourced by the bench/gpu_*.sh scripts: where pip cannot reach an index, the wheels in
# .whl/ (see bench/README.md, "On a GPU") are installed into /tmp/site and put on the path;
# then it prints what the machine has.
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), 'cpus', __import__('os').cpu_count())"
