#!/usr/bin/python3
"""Parity fixtures for the VBench-proxy metric: runs VBench's own rule code on the MP4 files in
tests/fixtures/vbench/ and writes what it gives to tests/fixtures/vbench/expected.json, which
quality tests compare our scores with (docs/quality.md).

    scripts/vbench_fixtures.py VBENCH_CHECKOUT      # a clone of github.com/Vchitect/VBench

A tool, never run by the build or the tests: it needs Debian's python3-opencv (cv2, VBench's
frame reader) and a VBench checkout, whose code it imports unchanged. VBench's package imports
networks' dependencies (torch, decord, torchvision) at the top; only the modules the rules need are
loaded, with the two helper modules they import from (and tqdm, if absent) stubbed, so the code
that runs is VBench's.
What runs: StaticFilter's check_static and set_params (static_filter.py) on flow-score lists,
temporal_flickering.cal_score (cv2.VideoCapture frames, then the mean absolute
difference of consecutive frames), the mean of the frames as cv2 decodes them (what our
VideoDecode::kOpenCv decode must give), and the normalisation bounds and weights of
scripts/constant.py.
"""
import ast
import importlib.util
import json
import os
import subprocess
import sys
import types

import cv2
import numpy as np

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "vbench")


def load_vbench_module(checkout, name):
    """vbench/NAME.py from CHECKOUT as vbench.NAME, its package and helper imports stubbed."""
    package = types.ModuleType("vbench")
    package.__path__ = [os.path.join(checkout, "vbench")]
    sys.modules.setdefault("vbench", package)
    utils = types.ModuleType("vbench.utils")
    utils.load_dimension_info = None
    sys.modules.setdefault("vbench.utils", utils)
    distributed = types.ModuleType("vbench.distributed")
    for helper in ["get_world_size", "get_rank", "all_gather", "barrier", "distribute_list_to_rank",
                   "gather_list_of_dict", "print0"]:
        setattr(distributed, helper, None)
    sys.modules.setdefault("vbench.distributed", distributed)
    if importlib.util.find_spec("tqdm") is None:  # a progress bar the rules do not need
        tqdm = types.ModuleType("tqdm")
        tqdm.tqdm = lambda iterable, **_: iterable
        sys.modules["tqdm"] = tqdm
    spec = importlib.util.spec_from_file_location("vbench." + name, os.path.join(checkout, "vbench", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def constants(checkout):
    """NORMALIZE_DIC and DIM_WEIGHT of VBench's scripts/constant.py (plain literals, read as such)."""
    tree = ast.parse(open(os.path.join(checkout, "scripts", "constant.py")).read())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("NORMALIZE_DIC", "DIM_WEIGHT"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    keys = ["temporal flickering", "motion smoothness", "dynamic degree"]
    return {k: {"min": found["NORMALIZE_DIC"][k]["Min"], "max": found["NORMALIZE_DIC"][k]["Max"],
                "weight": found["DIM_WEIGHT"][k]} for k in keys}


def static_rule(checkout):
    """VBench's StaticFilter.set_params and check_static from static_filter.py, as written there
    (the class's other methods load RAFT, so the two are taken out of it by their source)."""
    source = open(os.path.join(checkout, "static_filter.py")).read()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "StaticFilter")
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name in ("set_params", "check_static")]
    namespace = {}
    exec(compile(ast.Module(body=methods, type_ignores=[]), "static_filter.py", "exec"), namespace)

    def verdict(scores, frames, height, width):
        self = types.SimpleNamespace()
        namespace["set_params"](self, np.zeros((1, 3, height, width)), frames)
        return bool(namespace["check_static"](self, scores))
    return verdict


def static_cases(verdict):
    """Flow-score lists around the thresholds, at sizes and frame counts where round() and the
    wrap-around pairs matter, with VBench's verdicts."""
    rng = np.random.default_rng(7)
    cases = []
    for frames, height, width in [(8, 32, 48), (16, 64, 64), (24, 240, 320), (3, 16, 16), (17, 48, 32)]:
        thres = 3.0 * min(height, width) / 256.0
        for scale in [0.3, 0.9, 1.05, 2.0]:
            scores = [float(v) for v in rng.uniform(0.5, 1.2, frames + 1) * thres * scale]
            cases.append({"frames": frames, "height": height, "width": width, "scores": scores,
                          "static": verdict(scores, frames, height, width)})
    return cases


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    checkout = sys.argv[1]
    revision = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    flickering = load_vbench_module(checkout, "temporal_flickering")
    videos = {}
    for name in sorted(os.listdir(here)):
        if not name.endswith(".mp4"):
            continue
        path = os.path.join(here, name)
        frames = flickering.get_frames(path)  # BGR, as cv2 reads
        videos[name] = {
            "frames": len(frames),
            "height": int(frames[0].shape[0]),
            "width": int(frames[0].shape[1]),
            "mean_rgb": [float(np.mean([f[:, :, 2 - c].astype(np.float64).mean() for f in frames])) for c in range(3)],
            "temporal_flickering": float(flickering.cal_score(path)),
        }
    out = {"vbench_revision": revision, "opencv": cv2.__version__, "normalisation": constants(checkout),
           "static_filter": static_cases(static_rule(checkout)), "videos": videos}
    with open(os.path.join(here, "expected.json.tmp"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(os.path.join(here, "expected.json.tmp"), os.path.join(here, "expected.json"))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
