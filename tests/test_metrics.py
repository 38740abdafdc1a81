"""Metrics against scikit-learn / scipy on random predictions."""

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from tickets_core.tasks import metrics as M
@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert M.accuracy(p, y) == pytest.approx(sklearn.metrics.accuracy_score(y, p))
    assert M.f1(p, y) == pytest.approx(sklearn.metrics.f1_score(y, p))
    assert M.matthews_correlation(p, y) == pytest.approx(sklearn.metrics.matthews_corrcoef(y, p))
    both = M.accuracy_and_f1(p, y)
    assert both["accuracy_f1_mean"] == pytest.approx((both["accuracy"] + both["f1"]) / 2)
    y3, p3 = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert M.matthews_correlation(p3, y3) == pytest.approx(sklearn.metrics.matthews_corrcoef(y3, p3))


def test_degenerate_cases_match_sklearn():
    y = np.array([0, 1, 1, 0])
    const = np.zeros(4, dtype=int)
    assert M.matthews_correlation(const, y) == sklearn.metrics.matthews_corrcoef(y, const) == 0.0
    assert M.f1(const, y) == sklearn.metrics.f1_score(y, const, zero_division=0) == 0.0
    assert M.matthews_correlation(y, y) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_correlations_match_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 5, 150)
    p = y + rng.normal(0, 1.5, 150)
    y_tied = np.round(y)  # ties exercise the average-rank rule
    assert M.pearson(p, y) == pytest.approx(scipy.stats.pearsonr(p, y)[0])
    assert M.spearmanr(p, y) == pytest.approx(scipy.stats.spearmanr(p, y)[0])
    assert M.spearmanr(np.round(p), y_tied) == pytest.approx(scipy.stats.spearmanr(np.round(p), y_tied)[0])
    both = M.pearson_and_spearman(p, y)
    assert both["pearson_spearman_mean"] == pytest.approx((both["pearson"] + both["spearmanr"]) / 2)


def test_mlm_metrics():
    out = M.mlm_metrics(loss_sum=20.0, correct=3, count=10)
    assert out == {"mlm_accuracy": 0.3, "mlm_loss": 2.0, "perplexity": pytest.approx(np.exp(2.0))}
