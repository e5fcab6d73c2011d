"""Record the official PSA outputs: tests/golden/psa/psa.npz and psa_bn_stats.npz (README.md).

Usage: OMP_NUM_THREADS=1 .venv/bin/python tests/golden/psa/record_psa.py PSA [MCTFORMER]
with PSA a checkout of jiwoon-ahn/psa at 9493e59 and MCTFORMER one of xulianuwa/MCTformer at
c5db727 (its psa/ copy; optional). Neither checkout is edited: the patches are in memory.
The official scripts run as scripts (runpy, their own argument defaults unless set below).
"""
import contextlib, glob, os, runpy, sys, tempfile, types
PSA = os.path.abspath(sys.argv[1])
MCT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else None
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
sys.path[:0] = [os.path.dirname(HERE), REPO]
import numpy as np
import torch
import torch.nn as nn
from PIL import Image
torch.set_num_threads(1)
import seeded
from csdseg.data.transforms import normalize, resize_to
from csdseg.models.affinitynet import AffinityNet

# --- patches to run on a CPU with today's libraries (README.md lists them) -------------------
torch.Tensor.cuda = lambda self, *a, **k: self                                   # 1. CUDA
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.cuda.device = lambda *a, **k: contextlib.nullcontext()
torch.cuda.device_count = lambda: 1
torch.nn.parallel.replicate = lambda m, devices, *a, **k: [m for _ in devices]
_np_load = np.load                                                                # 2. NumPy
np.load = lambda *a, **k: _np_load(*a, **{"allow_pickle": True, **k})
WRITTEN = {}                                                                      # 3. SciPy
_scipy, _misc = types.ModuleType("scipy"), types.ModuleType("scipy.misc")
_misc.imsave = lambda path, arr: WRITTEN.__setitem__(os.path.basename(path)[:-4], np.array(arr))
_scipy.misc = _misc
sys.modules.update({"scipy": _scipy, "scipy.misc": _misc})


def block_reduce(image, block_size, func=np.sum, cval=0):                         # 4. skimage
    """scikit-image's block_reduce: pad with cval to whole blocks, func over each block."""
    pad = [(0, -s % b) for s, b in zip(image.shape, block_size)]
    image = np.pad(image, pad, constant_values=cval)
    shape = [n for s, b in zip(image.shape, block_size) for n in (s // b, b)]
    axes = tuple(range(1, 2 * image.ndim, 2))
    blocks = image.reshape(shape).transpose([a - 1 for a in axes] + list(axes))
    return func(blocks, axis=tuple(range(image.ndim, 2 * image.ndim)))


_skimage, _measure = types.ModuleType("skimage"), types.ModuleType("skimage.measure")
_measure.block_reduce = block_reduce
_skimage.measure = _measure
sys.modules.update({"skimage": _skimage, "skimage.measure": _measure})
import torchvision.transforms                                                     # 5. no jitter
torchvision.transforms.ColorJitter = lambda *a, **k: (lambda img: img)
Image.CUBIC = Image.BICUBIC                                                       # 6. Pillow 10

# --- seeded inputs and weights ---------------------------------------------------------------
SIZES = ((100, 90), (92, 108))
images = seeded.seeded_images(7, SIZES)
classes = [[3, 12], [0, 7, 14]]
labels = np.zeros((len(images), 20), np.float32)
for i, cs in enumerate(classes):
    labels[i, cs] = 1
names = ["2099_%06d" % (i + 1) for i in range(len(images))]
WORK = tempfile.mkdtemp(prefix="golden_psa_")
for d in ("voc/JPEGImages", "cam", "la", "ha", "rw", "mct_rw"):
    os.makedirs(os.path.join(WORK, d))
for n, img in zip(names, images):  # lossless: PNG bytes under the .jpg name the loader opens
    Image.fromarray(img).save(f"{WORK}/voc/JPEGImages/{n}.jpg", format="PNG")
with open(f"{WORK}/list.txt", "w") as f:
    f.write("".join(f"/JPEGImages/{n}.jpg\n" for n in names))

aff_net = AffinityNet().eval()  # eval: no dropout while measuring the statistics
aff_net.load_state_dict(seeded.seeded_state(aff_net, seeded.SEED_PSA))
calib = torch.stack([torch.from_numpy(normalize(resize_to(i, (96, 96), bicubic=True)))
                     for i in images])
bn_stats = seeded.calibrated_bn_stats(aff_net, calib)
aff_state = aff_net.state_dict()
fc8 = nn.Module()
fc8.fc8 = nn.Conv2d(4096, 20, 1, bias=False)
cls_state = {k: v for k, v in aff_state.items() if not k.startswith(("f8_", "f9."))}
# Each class's response is shifted to a mean of -1.2 times its spread over the images, so that
# ReLU(CAM) is 0 on most of each image and PSA's background score (1 - max CAM)^alpha has
# somewhere to win (with the random fc8 alone, the present classes' maps cover every pixel).
w = seeded.seeded_state(fc8, seeded.SEED_PSA_FC8)["fc8.weight"][:, :, 0, 0]
with torch.no_grad():
    feats = aff_net.forward_features(calib)["conv6"].permute(1, 0, 2, 3).flatten(1)  # [C, N]
m = feats.mean(dim=1)
spread = (w @ feats).std(dim=1)
w = w - ((w @ m) + 1.2 * spread)[:, None] * m[None] / (m @ m)
cls_state["fc8.weight"] = w[:, :, None, None].contiguous()
torch.save(aff_state, f"{WORK}/aff.pth")
torch.save(cls_state, f"{WORK}/cls.pth")


def run(script, *args):
    sys.argv = [script, *map(str, args)]
    stdout = sys.stdout
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        sys.stdout = stdout  # train_aff's Logger replaces it


def use_checkout(root):
    for name in [m for m in sys.modules if m.split(".")[0] in ("network", "tool", "voc12")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    import voc12.data as vd  # 7. the seeded labels for the seeded names
    vd.load_image_label_list_from_npy = lambda img_names: [labels[names.index(n)] for n in img_names]
    return vd


out = {f"images_{i}": img for i, img in enumerate(images)}
out["labels"] = labels
os.chdir(WORK)
vd = use_checkout(PSA)
common = ["--voc12_root", f"{WORK}/voc", "--num_workers", 1]

# --- infer_cls: PSA's CAMs and the low/high-alpha CRF scores (alpha 4 / 32) --------------------
run(f"{PSA}/infer_cls.py", "--weights", f"{WORK}/cls.pth", "--network", "network.resnet38_cls",
    "--infer_list", f"{WORK}/list.txt", "--out_cam", f"{WORK}/cam", "--out_la_crf", f"{WORK}/la",
    "--out_ha_crf", f"{WORK}/ha", *common)
for i, n in enumerate(names):
    cam = np.load(f"{WORK}/cam/{n}.npy").item()
    out[f"keys_{i}"] = np.array(list(cam), np.int64)
    out[f"cam_{i}"] = np.stack(list(cam.values())).astype(np.float32)
    for which in ("la", "ha"):
        d = np.load(f"{WORK}/{which}/{n}.npy").item()
        assert list(d) == [0] + [k + 1 for k in cam]
        out[f"{which}_{i}"] = np.stack(list(d.values())).astype(np.float32)

# --- train_aff: one step on the batch of both images, crop 112 --------------------------------
import network.resnet38_aff
from tool import imutils, pyutils
imutils.random = types.SimpleNamespace(randrange=lambda n: 0, getrandbits=lambda k: 0)  # 8.
rec = {"getitem": [], "forward": [], "loss": [], "parts": []}
_getitem = vd.VOC12AffDataset.__getitem__
def getitem(self, idx):
    r = _getitem(self, idx)
    rec["getitem"].append((idx, r))
    return r
vd.VOC12AffDataset.__getitem__ = getitem
def record_forward(net_class):
    _fwd = net_class.forward
    def forward(self, x, to_dense=False):
        r = _fwd(self, x, to_dense)
        rec["forward"].append((x.detach().clone(), r.detach().clone(), to_dense))
        if to_dense:  # infer_aff: also keep the [D, Ns] affinities of the same input
            with torch.no_grad():
                rec["forward"].append((x.clone(), _fwd(self, x, False).clone(), False))
        return r
    net_class.forward = forward
record_forward(network.resnet38_aff.Net)
_backward = torch.Tensor.backward
def backward(self, *a, **k):
    rec["loss"].append(self.detach().clone())
    return _backward(self, *a, **k)
torch.Tensor.backward = backward
_add = pyutils.AverageMeter.add
def add(self, d):
    rec["parts"].append(dict(d))
    return _add(self, d)
pyutils.AverageMeter.add = add
torch.manual_seed(0)
_dropout = nn.Dropout2d.forward
nn.Dropout2d.forward = lambda self, x: x  # 9. no dropout in the recorded step (b6, b7)
run(f"{PSA}/train_aff.py", "--weights", f"{WORK}/aff.pth", "--network", "network.resnet38_aff",
    "--train_list", f"{WORK}/list.txt", "--la_crf_dir", f"{WORK}/la", "--ha_crf_dir", f"{WORK}/ha",
    "--crop_size", 112, "--batch_size", 2, "--max_epoches", 1, "--session_name", f"{WORK}/aff_run",
    "--voc12_root", f"{WORK}/voc", "--num_workers", 0)
torch.Tensor.backward = _backward
nn.Dropout2d.forward = _dropout
assert len(rec["loss"]) == 1 and len(rec["forward"]) == 1
out["train_order"] = np.array([idx for idx, _ in rec["getitem"]])
for idx, (img, (bg, fg, neg)) in rec["getitem"]:
    for k, v in (("bg", bg), ("fg", fg), ("neg", neg)):
        out[f"train_{k}_{idx}"] = np.asarray(v).astype(np.uint8)
out["train_aff"] = rec["forward"][0][1].numpy()
out["train_loss"] = rec["loss"][0].numpy()
out["train_parts"] = np.array([rec["parts"][0][k] for k in
                               ("bg_loss", "fg_loss", "neg_loss", "bg_cnt", "fg_cnt", "neg_cnt")])
trained = torch.load(f"{WORK}/aff_run.pth")  # after one PolyOptimizer step
out["train_f8_3_after"] = trained["f8_3.weight"].numpy()[:8]
out["train_b7_conv_after"] = trained["b7.conv_branch2b2.weight"].numpy()[:4, :8]

# --- infer_aff: affinities of each padded image, the walk (alpha 16, beta 8, logt 8) -----------
class RecUpsample(nn.Upsample):
    def forward(self, x):
        rec["rw"].append(x.clone())
        return super().forward(x)
nn.Upsample = torch.nn.Upsample = RecUpsample
rec["forward"], rec["rw"] = [], []
run(f"{PSA}/infer_aff.py", "--weights", f"{WORK}/aff.pth", "--network", "network.resnet38_aff",
    "--infer_list", f"{WORK}/list.txt", "--cam_dir", f"{WORK}/cam", "--out_rw", f"{WORK}/rw", *common)
for i, n in enumerate(names):
    out[f"aff_{i}"] = rec["forward"][2 * i + 1][1][0].numpy()
    out[f"rw_{i}"] = rec["rw"][i][0].numpy()
    out[f"rw_label_{i}"] = WRITTEN.pop(n)

# the same with 4 steps (logt 2): on these small grids 2^8 steps nearly reach the stationary
# distribution, which would hide a wrong step count
rec["forward"], rec["rw"] = [], []
run(f"{PSA}/infer_aff.py", "--weights", f"{WORK}/aff.pth", "--network", "network.resnet38_aff",
    "--infer_list", f"{WORK}/list.txt", "--cam_dir", f"{WORK}/cam", "--out_rw", f"{WORK}/rw",
    "--logt", 2, *common)
for i, n in enumerate(names):
    out[f"rw_t2_{i}"] = rec["rw"][i][0].numpy()
    out[f"rw_t2_label_{i}"] = WRITTEN.pop(n)

# --- MCTformer's copy of infer_aff (bg_thr 0.39, logt 6) on the same CAMs and weights --------
if MCT is not None:
    use_checkout(os.path.join(MCT, "psa"))
    import network.resnet38_aff as mct_aff
    record_forward(mct_aff.Net)
    rec["forward"], rec["rw"] = [], []
    run(f"{MCT}/psa/infer_aff.py", "--weights", f"{WORK}/aff.pth", "--infer_list",
        f"{WORK}/list.txt", "--cam_dir", f"{WORK}/cam", "--out_rw", f"{WORK}/mct_rw", *common)
    for i, n in enumerate(names):
        out[f"mct_rw_{i}"] = rec["rw"][i][0].numpy()
        out[f"mct_rw_label_{i}"] = np.asarray(Image.open(f"{WORK}/mct_rw/{n}.png"))

np.savez_compressed(os.path.join(HERE, "psa.npz"), **out)
np.savez_compressed(os.path.join(HERE, "psa_bn_stats.npz"), **{k: v.numpy() for k, v in bn_stats.items()})
for k, v in out.items():
    print(k, v.shape, v.dtype, float(np.abs(v).max()) if v.size else None)
print(sorted(glob.glob(f"{WORK}/*")))
