"""Bayesian logistic regression on the Wisconsin breast-cancer data (569 × 30, standardised),
with N(0, 1) priors on the 30 weights and the intercept. The data ship with scikit-learn,
which is needed for this model only (``pip install -e .[bench]``)."""

from __future__ import annotations

import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_diffusion.models.base import BuiltinModel


def load_data() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_breast_cancer
    except ImportError as err:
        raise ImportError(
            "The logistic-regression model reads scikit-learn's breast-cancer data set; "
            "install it with `pip install -e .[bench]`."
        ) from err
    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    return features.astype(np.float32), labels.astype(np.float32)


def model(features, labels=None):
    weights = numpyro.sample(
        "weights", dist.Normal(0.0, 1.0).expand([features.shape[1]]).to_event(1)
    )
    intercept = numpyro.sample("intercept", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Bernoulli(logits=features @ weights + intercept), obs=labels)


def builtin() -> BuiltinModel:
    features, labels = load_data()
    return BuiltinModel(
        name="logistic_regression",
        model=model,
        model_args=(features,),
        model_kwargs={"labels": labels},
    )
