"""Output agreement: relative L2 distance of a runtime's outputs to the reference outputs
(PyTorch eager FP32 on the same device and input), computed in float64. numpy only (onnx for
.pb tensor files, imported when one is read)."""

import glob
import os

import numpy as np


def save_outputs(path, outputs):
    """outputs: list of arrays -> .npz with keys out0, out1, ..."""
    np.savez(path, **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)})


def load_outputs(path):
    """A list of float arrays from an .npz (our reference), an .npy, an ONNX TensorProto .pb,
    or a directory of .npy / .pb files (taken in name order)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.npy")) + glob.glob(os.path.join(path, "*.pb")))
        if not files:
            raise ValueError(f"{path}: no .npy or .pb output files")
        out = []
        for f in files:
            out.extend(load_outputs(f))
        return out
    if path.endswith(".npz"):
        with np.load(path) as z:
            return [z[f"out{i}"] for i in range(len(z.files))]
    if path.endswith(".pb"):
        import onnx
        from onnx import numpy_helper
        t = onnx.TensorProto()
        with open(path, "rb") as f:
            t.ParseFromString(f.read())
        return [numpy_helper.to_array(t)]
    return [np.load(path)]


def agreement(outputs, reference):
    """{'rel_l2': ||y - r|| / ||r|| over all outputs together, 'max_abs': max |y - r|,
    'per_output': [...]}, or {'error': ...} when the outputs do not line up."""
    if len(outputs) != len(reference):
        return {"error": f"{len(outputs)} outputs, reference has {len(reference)}"}
    num = den = 0.0
    max_abs = 0.0
    per = []
    for i, (y, r) in enumerate(zip(outputs, reference)):
        y = np.asarray(y)
        r = np.asarray(r)
        if y.shape != r.shape:
            if y.size == r.size:  # e.g. a runtime that drops a unit dimension
                y = y.reshape(r.shape)
            else:
                return {"error": f"output {i} has shape {list(y.shape)}, reference {list(r.shape)}"}
        y64 = y.astype(np.float64).ravel()
        r64 = r.astype(np.float64).ravel()
        if not np.all(np.isfinite(y64)):
            bad = int(np.count_nonzero(~np.isfinite(y64)))
            return {"error": f"output {i} has {bad} non-finite values", "rel_l2": float("nan")}
        d = y64 - r64
        dn, rn = float(np.dot(d, d)), float(np.dot(r64, r64))
        num += dn
        den += rn
        m = float(np.max(np.abs(d))) if d.size else 0.0
        max_abs = max(max_abs, m)
        per.append({"shape": list(r.shape), "rel_l2": (dn ** 0.5 / rn ** 0.5) if rn > 0 else None,
                    "max_abs": m})
    rel = (num ** 0.5 / den ** 0.5) if den > 0 else (0.0 if num == 0 else float("inf"))
    return {"rel_l2": rel, "max_abs": max_abs, "per_output": per}
