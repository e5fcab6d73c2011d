"""CPU-run patches for the official IRN, applied in memory before its modules are imported."""
import contextlib, sys, types
import numpy as np
import torch

# 1. CUDA: .cuda() is the identity, cuda.device() a no-op context; two "GPUs" so that the
#    official progress print (process_id == n_gpus - 1 and iter % (len // 20)) short-circuits
#    for process 0 on a 3-image split (len // 20 == 0 would divide by zero).
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.cuda.device = lambda *a, **k: contextlib.nullcontext()
torch.cuda.device_count = lambda: 2
# 2. imageio (not installed here): reads come from an in-memory dict of the seeded images,
#    writes are captured.
IMAGES, WRITTEN = {}, {}
imageio = types.ModuleType("imageio")
imageio.imread = lambda path: IMAGES[path.rsplit("/", 1)[-1].rsplit(".", 1)[0]]
def _write(path, arr, *a, **k):
    WRITTEN[path.rsplit("/", 1)[-1].rsplit(".", 1)[0]] = np.asarray(arr).copy()
imageio.imsave = imageio.imwrite = _write
sys.modules["imageio"] = imageio
