"""No drift raises no alarm beyond the nominal rate; a shifted sample is flagged (yelp vs amazon sentences, digits
with noise, through raw values, word features and a trained artifact's embeddings)."""
import numpy as np
from scipy.stats import binom

import tamer
from tamer.maintenance.drift import detect_drift
from tamer.maintenance.drift_config import DriftConfig
from tamer.maintenance.drift_data import DriftData, load_drift_data

SPLITS, ALPHA = 40, 0.05
# more false alarms than this in 40 splits has probability < 0.001 when the true rate is alpha
BOUND = int(binom.ppf(0.999, SPLITS, ALPHA))
CONFIG = DriftConfig(permutations=200, alpha=ALPHA)


def _digits():
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


def _alarms(make_pair):
    verdicts, mmd, domain = 0, 0, 0
    for seed in range(SPLITS):
        report = detect_drift(*make_pair(np.random.default_rng(1000 + seed)), CONFIG)
        verdicts += report.drift
        mmd += report.mmd["p_value"] <= ALPHA
        domain += report.domain["p_value"] <= ALPHA
    return verdicts, mmd, domain


def test_random_yelp_splits_raise_no_alarm_beyond_the_nominal_rate(sentiment_dir):
    texts = load_drift_data(str(sentiment_dir / "yelp_labelled.txt"), "--reference").texts

    def pair(rng):
        idx = rng.permutation(len(texts))
        return (DriftData("a", "text", texts=[texts[i] for i in idx[:200]]),
                DriftData("b", "text", texts=[texts[i] for i in idx[200:400]]))

    verdicts, mmd, domain = _alarms(pair)
    assert verdicts <= BOUND and mmd <= BOUND and domain <= BOUND, (verdicts, mmd, domain, BOUND)


def test_random_digits_splits_raise_no_alarm_beyond_the_nominal_rate():
    images = _digits()

    def pair(rng):
        idx = rng.permutation(len(images))
        return DriftData("a", "array", array=images[idx[:300]]), DriftData("b", "array", array=images[idx[300:600]])

    verdicts, mmd, domain = _alarms(pair)
    assert verdicts <= BOUND and mmd <= BOUND and domain <= BOUND, (verdicts, mmd, domain, BOUND)


def test_yelp_against_amazon_sentences_is_flagged_on_word_features(sentiment_dir):
    rng = np.random.default_rng(7)
    yelp = load_drift_data(str(sentiment_dir / "yelp_labelled.txt"), "--reference").texts
    amazon = load_drift_data(str(sentiment_dir / "amazon_cells_labelled.txt"), "--current").texts
    report = detect_drift(DriftData("y", "text", texts=list(rng.choice(yelp, 200, replace=False))),
                          DriftData("a", "text", texts=list(rng.choice(amazon, 200, replace=False))), CONFIG)
    assert report.drift and report.p_value <= 0.01 and report.features == "words (TF-IDF)"
    assert report.domain["auc"] > 0.8 and report.mmd["p_value"] <= 0.01


def test_digits_with_added_noise_are_flagged_on_raw_values_and_through_the_model(digits_artifact, tmp_path):
    images = _digits()
    idx = np.random.default_rng(0).permutation(len(images))
    noisy = images[idx[600:1200]] + np.random.default_rng(1).normal(0, 4, (600, 64)).astype(np.float32)
    np.save(tmp_path / "ref.npy", images[idx[:600]].reshape(-1, 8, 8))
    np.save(tmp_path / "noisy.npy", noisy.reshape(-1, 8, 8))
    np.save(tmp_path / "same.npy", images[idx[600:1200]].reshape(-1, 8, 8))
    raw = tamer.drift(tmp_path / "ref.npy", tmp_path / "noisy.npy", permutations=200)
    assert raw.drift and raw.features == "raw values" and raw.rows_current == 600
    embedded = tamer.drift(tmp_path / "ref.npy", tmp_path / "noisy.npy", artifact=digits_artifact, permutations=200)
    assert embedded.drift and embedded.features == f"embeddings of artifact {digits_artifact.id}"
    assert not tamer.drift(tmp_path / "ref.npy", tmp_path / "same.npy", artifact=digits_artifact,
                           permutations=200).drift


def test_the_embeddings_are_the_input_of_the_last_linear_layer(digits_artifact):
    import torch

    from tamer.maintenance.drift_features import artifact_embeddings

    images = _digits()[:50]
    emb = artifact_embeddings(digits_artifact, images, batch_size=16)
    task, model = digits_artifact.load_model()
    with torch.inference_mode():
        pixels = task.encode(images)["pixels"]
        expected = model.classifier[:-2](model.features(pixels)).numpy()  # flatten -> linear -> relu
    assert emb.shape == (50, 128) and np.allclose(emb, expected, atol=1e-5)
