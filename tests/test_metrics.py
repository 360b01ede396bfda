"""The metrics and the sample judge: the Frechet distance, its digits classifier, class coverage."""

import math

import pytest
import torch

from gentools import judge as J
from gentools import metrics
from gentools.data import load_images
from gentools.judge import (
    ClassifierConfig,
    class_coverage,
    digits_classifier,
    frechet_classifier_distance,
    heldout_reference_fcd,
)
from gentools.metrics import frechet_distance

FAST = ClassifierConfig(steps=60)  # a quick classifier: the properties hold for any weights


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test writes its classifier cache under tmp_path, never in the home folder."""
    monkeypatch.setenv("GENTOOLS_CACHE", str(tmp_path / "cache"))
    J.clear_classifier_cache()
    yield tmp_path / "cache"
    J.clear_classifier_cache()


@pytest.fixture(scope="module")
def digits():
    data = load_images("digits")
    return data.train.tensors[0] / 16, data.test.tensors[0] / 16, data.test.tensors[1]


def random_cov(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    """For commuting (diagonal) covariances, d^2 = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2."""
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = 1 + 4 + (1 - 3) ** 2 + (2 - 1) ** 2 + 0
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_on_non_commuting_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    s1, s2 = random_cov(6, 0), random_cov(6, 1)
    mu1, mu2 = torch.zeros(6), torch.ones(6)
    covmean = linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = 6 + float(s1.trace() + s2.trace()) - 2 * covmean.trace()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_is_zero_for_equal_and_symmetric():
    s1, s2 = random_cov(5, 2), random_cov(5, 3)
    mu1, mu2 = torch.randn(5), torch.randn(5)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    d12, d21 = frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1)
    assert d12 > 0.1 and d12 == pytest.approx(d21, rel=1e-9)


def test_frechet_distance_survives_singular_covariances():
    """Rank-deficient covariances (fewer samples than features) give a finite, >= 0 value."""
    f = torch.randn(3, 8, dtype=torch.float64)  # 3 samples, 8 features: rank 2
    s = torch.cov(f.T)
    d = frechet_distance(f.mean(0), s, f.mean(0) + 1, s)
    assert math.isfinite(d) and d == pytest.approx(8.0, abs=1e-6)


def test_classifier_distance_properties(digits):
    train, test, _ = digits
    clf = digits_classifier(FAST)
    assert frechet_classifier_distance(test, test, clf) == pytest.approx(0.0, abs=1e-6)
    ab = frechet_classifier_distance(train, test, clf)
    assert ab == pytest.approx(frechet_classifier_distance(test, train, clf), rel=1e-5)
    shifted = torch.roll(test, shifts=2, dims=-1)  # every digit moved 2 pixels right
    assert frechet_classifier_distance(train, shifted, clf) > 2 * ab
    noise = torch.rand(447, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_classifier_distance(train, noise, clf) > 10 * ab


def test_heldout_reference_compares_two_splits_the_classifier_never_saw(digits):
    train, test, _ = digits
    clf = digits_classifier(FAST)
    val = load_images("digits").val.tensors[0] / 16
    reference = heldout_reference_fcd(clf)
    assert reference == pytest.approx(frechet_classifier_distance(val, test, clf), rel=1e-9)
    assert reference != pytest.approx(frechet_classifier_distance(train, test, clf), rel=1e-3)
    assert 0 < reference


def test_class_coverage_is_a_histogram_of_predictions(digits):
    train, test, labels = digits
    clf = digits_classifier(FAST)
    cov = class_coverage(test, clf)
    assert cov.shape == (10,) and cov.sum().item() == pytest.approx(1.0)
    assert cov.min() > 0.05  # the test split is balanced and the classifier is decent
    threes = class_coverage(test[labels == 3], clf)
    assert threes.argmax().item() == 3 and threes[3] > 0.5


def test_classifier_is_deterministic_and_cached_on_disk(cache, monkeypatch):
    assert J.cache_dir() == cache
    first = digits_classifier(FAST)
    files = list(cache.glob("digits-classifier-*.safetensors"))
    assert len(files) == 1
    assert digits_classifier(FAST) is first  # the in-memory cache
    J.clear_classifier_cache()
    with monkeypatch.context() as m:
        m.setattr(J, "_train_classifier", lambda *a: pytest.fail("retrained"))
        loaded = digits_classifier(FAST)  # from disk
    assert loaded is not first and loaded.test_accuracy == first.test_accuracy
    J.clear_classifier_cache()
    for f in files:
        f.unlink()
    again = digits_classifier(FAST)  # trained afresh: the same weights bit for bit
    for (name, p), q in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    other = digits_classifier(ClassifierConfig(steps=61))
    assert len(list(cache.glob("*.safetensors"))) == 2  # another config, another file
    assert not torch.equal(other.head.weight, first.head.weight)


def test_classifier_learns_and_checks_shapes():
    clf = digits_classifier(FAST)
    assert clf.test_accuracy > 0.8
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\) images, got \(2, 1, 28, 28\)"):
        clf.features(torch.zeros(2, 1, 28, 28))


def test_on_levels_rounds_to_the_nearest_level_and_keeps_real_digits(digits):
    train, test, _ = digits
    assert torch.equal(metrics.on_levels(test, 17), test)  # real digits: unchanged, bit for bit
    x = torch.tensor([0.0, 0.03, 0.04, 0.5, 0.97, 1.2, -0.1])
    expected = torch.tensor([0.0, 0.0, 1 / 16, 0.5, 1.0, 1.0, 0.0])
    assert torch.equal(metrics.on_levels(x, 17), expected)
    assert torch.equal(metrics.on_levels(x, 2), torch.tensor([0.0, 0, 0, 0, 1, 1, 0]))


def test_sample_metrics_see_images_on_the_datas_levels(digits):
    """A continuous sample set (like a GAN's) is scored as its nearest-level version: its
    distance and coverage equal those of on_levels(x), and differ from what its raw features
    would give."""
    train, test, _ = digits
    clf = digits_classifier(FAST)
    assert clf.levels == load_images("digits").levels == 17
    noise = torch.rand(test.shape, generator=torch.Generator().manual_seed(0))
    soft = (0.8 * train[:447] + 0.1 + 0.06 * noise).clamp(0, 1)  # greys between the levels
    levelled = metrics.on_levels(soft, clf.levels)
    assert not torch.equal(soft, levelled)
    fcd = frechet_classifier_distance(soft, test, clf)
    assert fcd == frechet_classifier_distance(levelled, test, clf)
    assert torch.equal(class_coverage(soft, clf), class_coverage(levelled, clf))
    with torch.no_grad():
        raw = metrics.feature_statistics(clf.features(soft).double())
    unlevelled = frechet_distance(*raw, *metrics.feature_statistics(
        J.classifier_features(test, clf)))
    assert abs(unlevelled - fcd) > 1e-3 * fcd


def test_likelihood_models_sample_on_the_levels_already():
    """The metrics' rounding leaves the VAE's, PixelCNN's and flow's samples as they are (they
    are drawn on the levels), so only the GAN's continuous outputs are changed by it."""
    from gentools.models.flow import Flow
    from gentools.models.pixelcnn import PixelCNN
    from gentools.models.vae import VAE

    for cls in (VAE, PixelCNN, Flow):
        model = cls.from_size("tiny", shape=(1, 8, 8), levels=17).eval()
        x = model.sample(16, generator=torch.Generator().manual_seed(0))
        assert torch.equal(metrics.on_levels(x, 17), x.cpu()), cls.__name__


def test_histogram_samples_follow_the_per_pixel_histograms():
    """Each pixel of the baseline's samples is drawn from that pixel's smoothed histogram of the
    training images: a pixel that is 0 in every training digit stays 0 (up to the add-one
    smoothing), and every pixel's mean matches its training mean."""
    data = load_images("digits")
    x = J.histogram_samples(data, 4000, torch.Generator().manual_seed(0))
    assert x.shape == (4000, 1, 8, 8) and torch.equal(metrics.on_levels(x, 17), x)
    train = data.train.tensors[0].float() / 16
    counts = torch.zeros(64, 17).scatter_add_(1, data.train.tensors[0].flatten(1).long().T,
                                               torch.ones(64, 1000))
    p = (counts + 1) / (1000 + 17)  # the same smoothing as pixel_histogram_nll
    expected = p @ torch.linspace(0, 1, 17)  # (64,) the mean grey of each pixel
    se = ((p @ torch.linspace(0, 1, 17) ** 2 - expected**2) / 4000).sqrt()
    assert ((x.flatten(1).mean(0) - expected).abs() <= 5 * se + 1e-6).all()
    assert (expected - train.flatten(1).mean(0)).abs().max() < 0.02
    again = J.histogram_samples(data, 4000, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)  # seeded


def test_the_judge_anchors_lie_where_they_should():
    """On the digits: the held-out reference is the 350-vs-447 distance at any n >= 350, the
    histogram baseline is far above it (no structure), and a model that copies real images
    lands near the reference."""
    data = load_images("digits")
    clf = digits_classifier(FAST)
    judge = J.sample_judge(data, 1000, 0)
    assert judge.classifier.test_accuracy > 0.9  # the default classifier, trained here
    assert judge.reference == heldout_reference_fcd(judge.classifier)
    assert judge.reference == heldout_reference_fcd(judge.classifier, data, 350)
    assert judge.reference != heldout_reference_fcd(judge.classifier, data, 200)
    assert judge.baseline > 3 * judge.reference
    real = data.val.tensors[0].float() / 16
    assert judge.fcd(real) == judge.reference
    labels = data.val.tensors[1]
    assert judge.accuracy(real, labels) > 0.9 and judge.accuracy(real, (labels + 1) % 10) < 0.1
    assert clf is not judge.classifier  # another config, another classifier
