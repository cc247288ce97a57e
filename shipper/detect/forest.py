"""The anomaly model: an IsolationForest trained in a child process, scored here from plain lists.

scikit-learn costs ~95 MB of RSS once imported and ~3.6 ms per `score_samples` call (a
joblib dispatch per tree) for one vector; the shipper scores one vector per container per
stats sample. So training runs in a short-lived child (`python -m shipper.detect.forest`)
that hands back each tree's arrays, and `Forest.score` walks them with the same arithmetic
as scikit-learn's `_compute_score_samples` (features as float32, per-leaf depth plus the
average path length of what the leaf still holds, summed in tree order): the same scores
(to the last bit of numpy's own `pow`), without scikit-learn in the shipper.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SCORES_KEPT = 4096  # per model: idle containers repeat the same few vectors


@dataclass
class Forest:
    """Each tree as (left, right, feature, threshold, leaf depth) lists; a leaf's left child is -1."""

    trees: list[tuple[list[int], list[int], list[int], list[float], list[float]]]
    denominator: float
    sklearn: str = ""
    _scores: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    def score(self, vector: Sequence[float]) -> float:
        """The anomaly score, -IsolationForest.score_samples([vector])[0]: near 1 is unlike the training."""
        key = tuple(vector)
        known = self._scores.get(key)
        if known is None:
            known = self._scores[key] = self._score(struct.unpack(f"{len(key)}f", struct.pack(f"{len(key)}f", *key)))
            if len(self._scores) > SCORES_KEPT:
                self._scores.popitem(last=False)
        return known

    def _score(self, x: Sequence[float]) -> float:
        depths = 0.0
        for left, right, feature, threshold, leaf_depth in self.trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x[feature[node]] <= threshold[node] else right[node]
            depths += leaf_depth[node]
        if self.denominator == 0:
            return 1.0  # one training sample: scikit-learn's own special case
        return float(2 ** (-(depths / self.denominator)))

    def to_dict(self) -> dict[str, Any]:
        return {"trees": self.trees, "denominator": self.denominator, "sklearn": self.sklearn}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> Forest:
        return cls([tuple(t) for t in saved["trees"]], saved["denominator"], saved.get("sklearn", ""))


def fit(samples: list[list[float]], tolerance: Sequence[float], trees: int) -> Forest:
    """Train in a child process, so scikit-learn's memory goes when it exits."""
    request = json.dumps({"samples": samples, "tolerance": list(tolerance), "trees": trees})
    done = subprocess.run([sys.executable, "-m", "shipper.detect.forest"], input=request.encode(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"anomaly training failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return Forest.from_dict(json.loads(done.stdout))


def fit_here(samples: list[list[float]], tolerance: Sequence[float], trees: int) -> Any:
    """The scikit-learn IsolationForest, on the samples jittered by `tolerance` (an idle, constant
    baseline still has a shape to learn)."""
    import numpy as np
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(0)
    base = np.asarray(samples, dtype=float)
    scale = np.asarray(tolerance)
    jittered = np.concatenate([base + rng.normal(0, 1, base.shape) * scale for _ in range(8)])
    return IsolationForest(n_estimators=trees, random_state=0).fit(jittered)


def reduce(model: Any) -> Forest:
    """A fitted IsolationForest as lists (every feature used by every tree: max_features=1.0)."""
    import sklearn
    from sklearn.ensemble._iforest import _average_path_length

    trees = []
    for index, estimator in enumerate(model.estimators_):
        tree = estimator.tree_
        # (depth of the leaf + average path length of what it holds - 1), as scikit-learn adds it per tree
        leaf_depth = model._decision_path_lengths[index] + model._average_path_length_per_tree[index] - 1.0
        trees.append((tree.children_left.tolist(), tree.children_right.tolist(), tree.feature.tolist(),
                      tree.threshold.tolist(), leaf_depth.tolist()))
    denominator = len(model.estimators_) * _average_path_length([model._max_samples])
    return Forest(trees, float(denominator[0]), sklearn.__version__)


def main() -> None:
    request = json.load(sys.stdin)
    model = fit_here(request["samples"], request["tolerance"], request["trees"])
    json.dump(reduce(model).to_dict(), sys.stdout)


if __name__ == "__main__":
    main()
