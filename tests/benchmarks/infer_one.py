"""One inference measurement in a fresh process: ``python infer_one.py medview|peer DATA.npz OUT.npy``.

Both sides start from the same CT already in memory (int16 HU on its geometry) and end with a uint8
label map on the CT's own grid; torch uses 2 threads.  Printed as one JSON line: seconds for that span
(model loading included), the process's peak resident memory and its resident memory just before.

medview
    ``medview.app.inference.infer_volume("demo-body-lungs", volume, device="cpu")``.
peer
    The same model run the way a script without medview would: SimpleITK resampling onto the card's
    4 mm LPS grid, the card's clip and min-max, ``torch.jit.load`` and MONAI's ``sliding_window_inference``
    (48^3 windows, 25 % overlap, Gaussian blending, 4 windows per batch), softmax, argmax, and
    nearest-neighbour resampling back.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
MODEL = REPO / "resources" / "models" / "demo-body-lungs"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def run_medview(data) -> np.ndarray:
    from medview.app.inference import infer_volume
    from medview.core.geometry import Geometry
    from medview.core.volume import Volume, VolumeMetadata

    g = Geometry(data["array"].shape, tuple(data["spacing"]), tuple(data["origin"]), tuple(data["direction"]))
    volume = Volume(data["array"], g, VolumeMetadata(modality="CT", units="HU"))
    return infer_volume("demo-body-lungs", volume, device="cpu").array


def run_peer(data) -> np.ndarray:
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    card = json.loads((MODEL / "model.json").read_text())
    image = sitk.GetImageFromArray(data["array"])
    image.SetSpacing(tuple(float(s) for s in data["spacing"]))
    image.SetOrigin(tuple(float(o) for o in data["origin"]))
    image.SetDirection(tuple(float(d) for d in data["direction"]))
    spacing = [float(s) for s in card["spacing_mm"]]
    size = [int(np.ceil(n * s / t)) for n, s, t in zip(image.GetSize(), image.GetSpacing(), spacing, strict=True)]
    grid = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                         image.GetDirection(), -1024.0, sitk.sitkFloat32)
    lo, hi = card["preprocessing"]["clip"]
    x = (np.clip(sitk.GetArrayFromImage(grid), lo, hi) - lo) / (hi - lo)
    net = torch.jit.load(str(MODEL / card["weights"]["file"]), map_location="cpu").eval()
    with torch.inference_mode():
        out = sliding_window_inference(torch.from_numpy(x[None, None].astype(np.float32)), card["patch_size"], 4,
                                       lambda t: torch.softmax(net(t), dim=1), overlap=0.25, mode="gaussian")
    labels = sitk.GetImageFromArray(out[0].argmax(0).numpy().astype(np.uint8))
    labels.CopyInformation(grid)
    back = sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(back)


def main() -> None:
    import torch

    torch.set_num_threads(2)
    mode, data_path, out_path = sys.argv[1:4]
    data = dict(np.load(data_path))
    before = rss_mb()
    t0 = time.perf_counter()
    labels = run_medview(data) if mode == "medview" else run_peer(data)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    np.save(out_path, labels.astype(np.uint8))
    print(json.dumps({"mode": mode, "seconds": seconds, "peak_rss_mb": peak, "rss_before_mb": before,
                      "shape": list(labels.shape), "dtype": str(labels.dtype)}))


if __name__ == "__main__":
    main()
