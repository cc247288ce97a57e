"""The anomaly model scored from lists gives scikit-learn's scores (to the last bit of numpy's own
power function), without scikit-learn."""

import math
import random
import subprocess
import sys

from shipper.detect.forest import fit, fit_here, reduce
from shipper.detect.stateful import TOLERANCE


def baseline(n: int = 60) -> list[list[float]]:
    rng = random.Random(1)
    return [[round(rng.uniform(0, 0.05), 2), 1.5, float(rng.choice((1, 2))), 0.0, round(rng.uniform(0, 1), 2), 0.0]
            for _ in range(n)]


def probes(n: int = 400) -> list[list[float]]:
    rng = random.Random(2)
    return [[round(rng.uniform(0, 2), 2), round(rng.uniform(0, 8), 2), float(rng.randint(0, 40)),
             round(rng.uniform(0, 6), 2), round(rng.uniform(0, 6), 2), round(rng.uniform(0, 120), 1)]
            for _ in range(n)] + baseline(20)


def test_scores_equal_scikit_learns():
    model = fit_here(baseline(), TOLERANCE, 50)
    forest = reduce(model)
    vectors = probes()
    expected = (-model.score_samples(vectors)).tolist()
    got = [forest.score(v) for v in vectors]
    assert all(abs(a - b) <= math.ulp(b) for a, b in zip(got, expected))  # numpy's SIMD pow may round otherwise
    assert [s >= 0.55 for s in got] == [s >= 0.55 for s in expected] and sum(s >= 0.55 for s in got) > 100
    assert [forest.score(v) for v in vectors] == got  # remembered scores are the same


def test_training_in_a_child_gives_the_same_forest():
    assert fit(baseline(), TOLERANCE, 20).to_dict() == reduce(fit_here(baseline(), TOLERANCE, 20)).to_dict()


def test_scoring_does_not_load_scikit_learn():
    code = ("import sys; from shipper.detect.forest import fit; from shipper.detect.stateful import TOLERANCE; "
            "f = fit([[0.0, 1.0, 1.0, 0.0, 0.0, 0.0]] * 10, TOLERANCE, 10); f.score([5.0, 1, 1, 0, 0, 0]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'numpy', 'scipy')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_a_saved_model_scores_the_same_once_reloaded(tmp_path):
    from shipper.config import AnomalyConfig
    from shipper.detect.stateful import AnomalyDetector, _ImageModel

    forest = reduce(fit_here(baseline(), TOLERANCE, 10))
    AnomalyDetector(AnomalyConfig(), tmp_path)._save(_ImageModel("img:1", forest=forest, trained_on=60))
    loaded = AnomalyDetector(AnomalyConfig(), tmp_path)._load("img:1")
    assert loaded.trained_on == 60 and loaded.forest is not None
    assert [loaded.forest.score(v) for v in probes(50)] == [forest.score(v) for v in probes(50)]
