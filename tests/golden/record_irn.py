"""Record the official IRN outputs: tests/golden/irn.npz and irn_bn_stats.npz (see README.md).

Usage: OMP_NUM_THREADS=1 .venv/bin/python tests/golden/record_irn.py /path/to/irn-checkout
(jiwoon-ahn/irn at a2ece00; its step/make_sem_seg_labels.py gets the one-line NumPy-2 edit).
"""
import os, sys, tempfile, types
OFFICIAL = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [OFFICIAL, HERE, REPO]
os.chdir(OFFICIAL)  # voc12/dataloader.py reads voc12/cls_labels.npy relative to the cwd
# NumPy 2: a (2, 1) size array no longer indexes as two scalars; flatten it (the one file edit)
_msl = os.path.join(OFFICIAL, "step/make_sem_seg_labels.py")
_text = open(_msl).read()
if "np.asarray(pack['size']).reshape(-1)" not in _text:
    assert _text.count("np.asarray(pack['size'])") == 1
    open(_msl, "w").write(_text.replace("np.asarray(pack['size'])",
                                        "np.asarray(pack['size']).reshape(-1)"))
import cpu_patches  # noqa: E402  (before any official import)
import numpy as np
import torch
torch.set_num_threads(1)
import seeded
from csdseg.models.cam_resnet import resnet50_cam
from csdseg.models.irn import IRNet

import net.resnet50
_rn50 = net.resnet50.resnet50
net.resnet50.resnet50 = lambda pretrained=True, **kw: _rn50(pretrained=False, **kw)  # no download
import voc12.dataloader as vd
from misc import indexing
import net.resnet50_cam, net.resnet50_irn
from step import make_cam, cam_to_ir_label, make_sem_seg_labels

WORK = tempfile.mkdtemp(prefix="golden_irn_")
os.makedirs(WORK + "/cam", exist_ok=True); os.makedirs(WORK + "/ir", exist_ok=True)
os.makedirs(WORK + "/sem", exist_ok=True)
images = seeded.seeded_images(0)
int_ids = [2099000001 + i for i in range(len(images))]
names = [vd.decode_int_filename(i) for i in int_ids]
classes = [[3, 12], [0, 7, 14], [5, 18]]
labels = np.zeros((len(images), 20), np.float32)
for i, cs in enumerate(classes):
    labels[i, cs] = 1
for n, i, img, lab in zip(names, int_ids, images, labels):
    cpu_patches.IMAGES[n] = img
    vd.cls_labels_dict[i] = lab
np.savetxt(WORK + "/list.txt", np.array(int_ids), fmt="%d")


def to_official(state, rules):
    out = {}
    for k, v in state.items():
        for src, dst in rules:
            if k.startswith(src):
                out[dst + k[len(src):]] = v
                break
        else:
            out[k] = v
    return out


def load(official, state):
    missing, unexpected = official.load_state_dict(state, strict=False)
    own = official.state_dict()
    # every official key left out must be an alias of a loaded tensor (stageN = resnet50.layerN)
    ptr = {v.data_ptr() for k, v in own.items() if k in state}
    bad = [k for k in missing if own[k].data_ptr() not in ptr]
    assert not bad and not unexpected, (bad[:5], unexpected[:5])


RESNET = [("stage1.0.", "resnet50.conv1."), ("stage1.1.", "resnet50.bn1."),
          ("stage1.4.", "resnet50.layer1."), ("stage2.", "resnet50.layer2."),
          ("stage3.", "resnet50.layer3."), ("stage4.", "resnet50.layer4.")]
IRN = [("backbone.0.0.", "resnet50.conv1."), ("backbone.0.1.", "resnet50.bn1."),
       ("backbone.1.", "resnet50.layer1."), ("backbone.2.", "resnet50.layer2."),
       ("backbone.3.", "resnet50.layer3."), ("backbone.4.", "resnet50.layer4."),
       ("dp_layers.6.0.0.", "dp_layers.6.0."), ("dp_layers.6.0.1.", "dp_layers.6.1."),
       ("dp_layers.6.1.", "dp_layers.6.3."), ("dp_layers.6.2.", "dp_layers.6.4.")]

args = types.SimpleNamespace(num_workers=1, cam_out_dir=WORK + "/cam", ir_label_out_dir=WORK + "/ir",
                             sem_seg_out_dir=WORK + "/sem", conf_fg_thres=0.30, conf_bg_thres=0.05,
                             beta=10, exp_times=8, sem_seg_bg_thres=0.25)
scales = (1.0, 0.5, 1.5, 2.0)

# --- make_cam -------------------------------------------------------------------------
from csdseg.data.transforms import normalize, resize_to
calib_x = torch.stack([torch.from_numpy(normalize(resize_to(i, (96, 96), bicubic=True)))
                       for i in images])
def seeded_calibrated(model, seed):
    model.load_state_dict(seeded.seeded_state(model, seed))
    stats = seeded.calibrated_bn_stats(model, calib_x)
    return model.state_dict(), stats
cam_state, cam_bn = seeded_calibrated(resnet50_cam(20, "none"), seeded.SEED_CAM)
cam_model = net.resnet50_cam.CAM()
load(cam_model, to_official(cam_state, RESNET))
cam_model.eval()
msf = vd.VOC12ClassificationDatasetMSF(WORK + "/list.txt", voc12_root="fake", scales=scales)
make_cam._work(0, cam_model, [msf], args)
out = {"images_%d" % i: img for i, img in enumerate(images)}
out["labels"] = labels
out["scales"] = np.array(scales)
for i, n in enumerate(names):
    d = np.load(f"{WORK}/cam/{n}.npy", allow_pickle=True).item()
    out[f"keys_{i}"] = np.asarray(d["keys"]); out[f"cam_{i}"] = np.asarray(d["cam"])
    out[f"high_res_{i}"] = np.asarray(d["high_res"])

# --- cam_to_ir_label ------------------------------------------------------------------
img_ds = vd.VOC12ImageDataset(WORK + "/list.txt", voc12_root="fake", img_normal=None, to_torch=False)
cam_to_ir_label._work(0, [img_ds], types.SimpleNamespace(**{**vars(args), "num_workers": 2}))
for i, n in enumerate(names):
    out[f"ir_label_{i}"] = cpu_patches.WRITTEN.pop(n)
# the same with high thresholds, so that all three verdicts (0, class, 255) occur
cam_to_ir_label._work(0, [img_ds], types.SimpleNamespace(**{**vars(args), "num_workers": 2,
                                                            "conf_fg_thres": 0.6, "conf_bg_thres": 0.35}))
for i, n in enumerate(names):
    out[f"ir_label_hi_{i}"] = cpu_patches.WRITTEN.pop(n)

# --- make_sem_seg_labels: boundary, displacement, random walk, labels ----------------------
irn_state, irn_bn = seeded_calibrated(IRNet("resnet50.tv_in1k", "none"), seeded.SEED_IRN)
edge_model = net.resnet50_irn.EdgeDisplacement()
irn_off = to_official(irn_state, IRN)
for k in ("dp_layers.6.4.running_var", "dp_layers.6.4.num_batches_tracked"):  # csdseg-only
    del irn_off[k]
load(edge_model, irn_off)
edge_model.eval()
calls = {"edge": [], "rw": []}
_fwd = edge_model.forward
def rec_forward(x):
    e, d = _fwd(x)
    calls["edge"].append((e.clone(), d.clone()))
    return e, d
edge_model.forward = rec_forward
_prop = indexing.propagate_to_edge
def rec_prop(*a, **k):
    r = _prop(*a, **k)
    calls["rw"].append(r.clone())
    return r
indexing.propagate_to_edge = rec_prop
msf1 = vd.VOC12ClassificationDatasetMSF(WORK + "/list.txt", voc12_root="fake", scales=(1.0,))
with torch.no_grad():
    make_sem_seg_labels._work(0, edge_model, [msf1], args)
for i, n in enumerate(names):
    e, d = calls["edge"][i]
    out[f"boundary_{i}"], out[f"displacement_{i}"] = e.numpy(), d.numpy()
    out[f"rw_{i}"] = calls["rw"][i][:, 0].numpy()
    out[f"sem_seg_{i}"] = cpu_patches.WRITTEN.pop(n)
np.savez_compressed(os.path.join(REPO, "tests/golden/irn.npz"), **out)
bn = {"cam." + k: v.numpy() for k, v in cam_bn.items()}
bn.update({"irn." + k: v.numpy() for k, v in irn_bn.items()})
np.savez_compressed(os.path.join(REPO, "tests/golden/irn_bn_stats.npz"), **bn)
for k, v in out.items():
    print(k, v.shape, v.dtype, float(np.abs(v).max()) if v.size else None,
          np.unique(v).tolist()[:8] if v.dtype == np.uint8 and "images" not in k else "")
