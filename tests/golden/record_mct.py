"""Record the official MCTformer V1/V2 outputs: tests/golden/mct.npz (see README.md).

Usage: OMP_NUM_THREADS=1 .venv/bin/python tests/golden/record_mct.py /path/to/MCTformer-checkout
(xulianuwa/MCTformer at c5db727, unedited: the CPU patches below are applied in memory).
"""
import contextlib, os, sys, tempfile, types
OFFICIAL = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [OFFICIAL, HERE, REPO]
os.chdir(OFFICIAL)
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
# CPU-run patches: Pillow 10 removed the Image.CUBIC alias; fp16 CUDA autocast becomes a no-op
# (map generation runs in float32); scikit-learn (evaluation only) is not installed.
PIL.Image.CUBIC = PIL.Image.BICUBIC
torch.cuda.amp.autocast = lambda *a, **k: contextlib.nullcontext()
import seeded
from csdseg.models.mctformer import mctformer_v1, mctformer_v2  # (imports timm before the stub)
import importlib.machinery
for mod in ("sklearn", "sklearn.metrics"):
    sys.modules[mod] = types.ModuleType(mod)
    sys.modules[mod].__spec__ = importlib.machinery.ModuleSpec(mod, None)
sys.modules["sklearn.metrics"].average_precision_score = None
import datasets, engine, models

WORK = tempfile.mkdtemp(prefix="golden_mct_")
os.makedirs(WORK + "/JPEGImages", exist_ok=True)
images = seeded.seeded_images(0)
names = [f"2099_00000{i + 1}" for i in range(len(images))]
classes = [[3, 12], [0, 7, 14], [5, 18]]
labels = np.zeros((len(images), 20), np.float32)
for i, cs in enumerate(classes):
    labels[i, cs] = 1
for n, img in zip(names, images):  # lossless PNG bytes under the .jpg name the loader opens
    PIL.Image.fromarray(img).save(f"{WORK}/JPEGImages/{n}.jpg", format="PNG")
with open(WORK + "/train_aug_id.txt", "w") as f:
    f.write("\n".join(names) + "\n")
LAB = dict(zip(names, labels))
datasets.load_image_label_list_from_npy = lambda ns, *a: [LAB[n] for n in ns]
scales = (1.0, 0.5, 1.5)

# bilinear interpolations inside generate_attention_maps_ms are of the (refined) grid maps
_interp, grids = F.interpolate, []
def rec_interp(x, *a, **k):
    if k.get("mode") == "bilinear":
        grids.append(x.detach().clone())
    return _interp(x, *a, **k)

out = {"images_%d" % i: img for i, img in enumerate(images)}
out["labels"], out["scales"] = labels, np.array(scales)
for version, build, seed in ((2, mctformer_v2, seeded.SEED_MCT), (1, mctformer_v1, seeded.SEED_MCT + 1)):
    ours = build(20, "none")
    state = seeded.seeded_state(ours, seed)
    name = f"deit_small_MCTformerV{version}_patch16_224"
    official = getattr(models, name)(pretrained=False, num_classes=20, drop_rate=0.0,
                                     drop_path_rate=0.1)
    missing, unexpected = official.load_state_dict(state, strict=False)
    # unused by the forward passes: the final LayerNorm (and V1's linear head)
    assert not unexpected and all(k.startswith(("norm.", "head.")) for k in missing), (missing, unexpected)
    official.eval()
    p = f"v{version}_"
    ds = datasets.VOC12DatasetMS(img_name_list_path=WORK, voc12_root=WORK, scales=scales, train=False,
                                 gen_attn=True, transform=datasets.build_transform(False, types.SimpleNamespace(
                                     input_size=224, gen_attention_maps=True)))
    with torch.no_grad():
        for i in range(len(images)):  # single-view outputs: the scale-1 view
            x = ds[i][0][0][None]
            if version == 2:
                logits, patch_logits = official(x)
                _, fused, patch_attn = official(x, return_att=True, n_layers=3, attention_type="fused")
                _, mct, _ = official(x, return_att=True, n_layers=3, attention_type="mct")
                _, pcam, _ = official(x, return_att=True, n_layers=3, attention_type="patchcam")
                out[p + f"patch_logits_{i}"], out[p + f"fused_{i}"] = patch_logits.numpy(), fused.numpy()
                out[p + f"patchcam_{i}"] = pcam.numpy()
            else:
                logits, mct, patch_attn = official(x, return_att=True, n_layers=3)
                mct = mct.reshape(1, 20, x.shape[2] // 16, x.shape[3] // 16)
            out[p + f"logits_{i}"], out[p + f"mtatt_{i}"] = logits.numpy(), mct.numpy()
            out[p + f"patch_attn_{i}"] = patch_attn.sum(0).numpy()
    args = types.SimpleNamespace(attention_dir=None, cam_npy_dir=f"{WORK}/npy_v{version}", img_list=WORK,
                                 patch_size=16, model=name, nb_classes=20, layer_index=3,
                                 attention_type="fused", patch_attn_refine=True,
                                 visualize_cls_attn=True, out_crf=None)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=False)
    grids.clear()
    F.interpolate = rec_interp
    with torch.no_grad():
        engine.generate_attention_maps_ms(loader, official, torch.device("cpu"), args)
    F.interpolate = _interp
    per_image = 2 * len(scales)
    for i, n in enumerate(names):
        d = np.load(f"{args.cam_npy_dir}/{n}.npy", allow_pickle=True).item()
        out[p + f"keys_{i}"] = np.array(sorted(d))
        out[p + f"high_res_{i}"] = np.stack([d[k] for k in sorted(d)]).astype(np.float32)
        out[p + f"refined_{i}"] = grids[i * per_image][0].numpy()  # scale 1, unflipped
np.savez_compressed(os.path.join(REPO, "tests/golden/mct.npz"), **out)
for k, v in out.items():
    print(k, v.shape, v.dtype, float(np.abs(v).max()))
