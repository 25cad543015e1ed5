"""What a new user meets in the first hour (issue 14): defaults, validation, errors that point to the fix,
what peers' users expect (PCA, dtype, partial_fit), feature names, the `layers --stages` view."""

from __future__ import annotations

import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest
from gensim.test.utils import datapath
from sklearn.decomposition import PCA
from sklearn.utils._param_validation import InvalidParameterError

from skfeaturize import ImageFeaturizer, LayerNotFoundError, TextFeaturizer, WordVectorFeaturizer
from skfeaturize.exceptions import FitDataRequiredError, RefitRequiredError

from .test_text import _save_tiny

TOY = datapath("toy-model.vec")
DOCS = ["the anarchist society", "what is property", "anarchism is a term", "it is the society",
        "anarchists are what they are", "property of the society", "an anarchist is", "this term"]


# -- 7. errors that point to the fix --------------------------------------------------------------------

def test_a_hugging_face_folder_given_to_the_image_featurizer_suggests_text(tmp_path, capsys):
    folder = _save_tiny(tmp_path / "bert")
    with pytest.raises(ValueError, match=r"is a Hugging Face model folder .* TextFeaturizer .*--featurizer "
                                         r"text"):
        ImageFeaturizer(folder).fit([])
    from skfeaturize.cli import main

    capsys.readouterr()
    assert main(["layers", folder]) == 1
    assert "--featurizer text" in capsys.readouterr().err
    (tmp_path / "imgs").mkdir()
    out = str(tmp_path / "out.parquet")
    assert main(["embed", str(tmp_path / "imgs"), "--out", out, "--model", folder]) == 1
    err = capsys.readouterr().err
    assert "Hugging Face model folder" in err and "--featurizer text" in err and "Traceback" not in err


def test_the_text_layers_view_has_a_stages_only_form(tmp_path, capsys):
    from skfeaturize.cli import main

    folder = _save_tiny(tmp_path / "bert")
    assert main(["layers", folder, "--featurizer", "text", "--stages", "--format", "csv"]) == 0
    rows = [line.split(",")[0] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert rows == [str(i) for i in range(len(rows))] and len(rows) >= 2  # hidden states 0..L


def test_device_is_validated_with_the_allowed_values():
    with pytest.raises(InvalidParameterError, match=r"'device' parameter .* 'cuda:N'.*Got 'gpu'"):
        ImageFeaturizer("resnet18", weights=None, device="gpu").fit([])
    with pytest.raises(InvalidParameterError, match=r"'device' parameter"):
        TextFeaturizer("x", device="gpu").fit(["a"])


def test_cache_of_a_wrong_type_names_the_allowed_types():
    with pytest.raises(InvalidParameterError,
                       match=r"'cache' parameter .* 'str', .*PathLike.*EmbeddingCache'. Got 1"):
        ImageFeaturizer("resnet18", weights=None, cache=1).fit([])
    with pytest.raises(InvalidParameterError, match=r"'cache' parameter"):
        WordVectorFeaturizer(TOY, cache=1).fit(DOCS)


def test_did_you_mean_lists_no_duplicates():
    with pytest.raises(LayerNotFoundError) as info:
        ImageFeaturizer("resnet18", weights=None, layer="layer4.9").fit([])
    suggestions = str(info.value).split("Did you mean ")[1].split("?")[0].split(" or ")
    assert len(suggestions) == len(set(suggestions)) >= 1


def test_a_grayscale_stack_is_n_images(small_images):
    gray = np.stack([a.mean(axis=2).astype(np.uint8) for a in small_images[:3]])  # (3, H, W)
    f = ImageFeaturizer("timm:test_resnet", weights=None).fit([])
    np.testing.assert_array_equal(f.transform(gray), f.transform(list(gray)))


def test_a_datasets_object_gets_a_one_line_fix():
    class Dataset:  # the shape of a Hugging Face datasets.Dataset, without the dependency
        __module__ = "datasets.arrow_dataset"
        column_names = ["text", "label"]

        def __iter__(self):
            return iter([{"text": "a", "label": 0}])

    with pytest.raises(TypeError, match=r"datasets.Dataset holds columns \['text', 'label'\].*ds\['text'\]"):
        WordVectorFeaturizer(TOY).fit(None).transform(Dataset())


# -- 9. out-of-vocabulary data is not silent --------------------------------------------------------------

def test_a_high_oov_rate_warns_at_fit_naming_the_top_tokens():
    with pytest.warns(UserWarning, match=r"50.0% of the training tokens are not in 'toy_model'.*'Zzq'.*"
                                         r"lowercase=True"):
        WordVectorFeaturizer(TOY, lowercase=False).fit(["the Zzq", "of Zzq"])


def test_oov_stats_reports_any_data_without_changing_the_fit():
    f = WordVectorFeaturizer(TOY).fit(DOCS)
    before = f.oov_rate_
    stats = f.oov_stats(["the qqzz qqzz", "qqzz"])
    assert stats == {"documents": 2, "tokens": 4, "oov_rate": 0.75, "oov_tokens": [("qqzz", 3)],
                     "empty_documents": 1}
    assert f.oov_rate_ == before == 1 / 28  # "they", one of the 28 training tokens


def test_sif_on_one_document_is_an_error():
    with pytest.raises(ValueError, match="fitted on a single document it removes that document"):
        WordVectorFeaturizer(TOY, pooling="sif").fit(["the society"])
    with pytest.raises(FitDataRequiredError, match=r"pooling='sif' is fitted on the training texts"):
        WordVectorFeaturizer(TOY, pooling="sif").fit(None)


# -- 11. PCA and dtype ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    return _save_tiny(tmp_path_factory.mktemp("first-hour-bert"))


def _featurizer(kind, small_images, tiny_text, **params):
    """One featurizer of each kind, with its training data."""
    if kind == "image":
        return ImageFeaturizer("timm:test_resnet", weights=None, layer=[1, -1], **params), small_images
    if kind == "text":
        return TextFeaturizer(tiny_text, layer=[-2, -1], **params), DOCS
    return WordVectorFeaturizer(TOY, **params), DOCS


@pytest.mark.parametrize("kind", ["image", "text", "words"])
def test_n_components_is_a_pca_fitted_on_the_training_features(kind, small_images, tiny_text):
    base, X = _featurizer(kind, small_images, tiny_text)
    raw = base.fit(X).transform(X)
    f = base.set_params(n_components=3).fit(X)
    ref = PCA(n_components=3, svd_solver="full").fit(raw.astype(np.float64))
    np.testing.assert_allclose(f.transform(X), ref.transform(raw), atol=1e-4)
    assert f.n_features_out_ == 3 and list(f.get_feature_names_out())[0].endswith("__pca_0")
    with pytest.raises(ValueError, match=r"n_components=99 must be <= min\(n_samples, n_features\)"):
        base.set_params(n_components=99).fit(X)


@pytest.mark.parametrize("kind", ["image", "text", "words"])
def test_dtype_float16_returns_half_precision(kind, small_images, tiny_text):
    half, X = _featurizer(kind, small_images, tiny_text, dtype="float16")
    full, _ = _featurizer(kind, small_images, tiny_text)
    out = half.fit(X).transform(X[:2])
    assert out.dtype == np.float16 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, full.fit(X).transform(X[:2]).astype(np.float16))


# -- 12. partial_fit --------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"pooling": "tfidf"}, {"pooling": "sif"}, {"oov": "unk"},
                                    {"oov": "hash", "pooling": "tfidf"}])
def test_partial_fit_on_halves_equals_fit_on_the_whole(params):
    docs = DOCS + ["qqzz the term", "society qqzz"]
    whole = WordVectorFeaturizer(TOY, **params).fit(docs)
    halves = WordVectorFeaturizer(TOY, **params).partial_fit(docs[:5]).partial_fit(docs[5:])
    for name in ("idf_", "word_prob_", "unk_vector_", "sif_component_", "oov_rate_", "n_fit_documents_",
                 "n_fit_tokens_", "n_empty_documents_"):
        a, b = getattr(whole, name, None), getattr(halves, name, None)
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            assert a == b, name
    assert whole.oov_tokens_ == halves.oov_tokens_ and whole.fingerprint_ == halves.fingerprint_
    np.testing.assert_allclose(halves.transform(docs), whole.transform(docs), atol=1e-6)


def test_partial_fit_of_a_pretrained_featurizer_validates_and_returns_self(small_images):
    f = ImageFeaturizer("timm:test_resnet", weights=None)
    assert f.partial_fit(small_images[:2]) is f and f.partial_fit(small_images[2:]) is f
    np.testing.assert_array_equal(f.transform(small_images[:2]),
                                  ImageFeaturizer("timm:test_resnet", weights=None).fit([]).transform(
                                      small_images[:2]))
    with pytest.raises(ValueError, match="trains word vectors on the whole training corpus"):
        WordVectorFeaturizer(TOY, oov="learn").partial_fit(DOCS)


def test_partial_fit_of_a_text_featurizer_checks_the_parameters_between_calls(tiny_text):
    f = TextFeaturizer(tiny_text)
    assert f.partial_fit(DOCS[:4]) is f and f.partial_fit(DOCS[4:]) is f
    np.testing.assert_array_equal(f.transform(DOCS), TextFeaturizer(tiny_text).fit(DOCS).transform(DOCS))
    f.set_params(pooling="max")
    with pytest.raises(RefitRequiredError, match=r"pooling.*call fit\(\) again"):
        f.partial_fit(DOCS[:2])
    with pytest.raises(ValueError, match="n_components"):
        TextFeaturizer(tiny_text, n_components=2).partial_fit(DOCS)


# -- 3. reduced precision on the CPU ----------------------------------------------------------------------

def test_reduced_precision_on_the_cpu_warns_and_auto_is_fp32(small_images):
    with pytest.warns(UserWarning, match=r"precision='bf16' on the CPU is usually several times slower than "
                                         r"fp32 and changes the numbers; use precision='auto'"):
        f = ImageFeaturizer("timm:test_resnet", weights=None, precision="bf16", device="cpu").fit([])
    assert f.precision_ == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ImageFeaturizer("timm:test_resnet", weights=None, device="cpu").fit([]).precision_ == "fp32"


def test_the_bulk_guide_does_not_ask_for_bf16_on_the_cpu():
    guide = (pathlib.Path(__file__).parents[1] / "docs" / "bulk.md").read_text(encoding="utf-8")
    assert "precision: auto" in guide and "precision: bf16" not in guide


# -- 10. every parameter validated ------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ImageFeaturizer, TextFeaturizer, WordVectorFeaturizer])
def test_every_parameter_has_a_constraint(cls):
    assert set(cls._parameter_constraints) == set(cls().get_params())


def test_a_pooling_changed_after_fit_needs_a_refit_not_an_attribute_error():
    f = WordVectorFeaturizer(TOY, pooling="mean").fit(DOCS).set_params(pooling="tfidf")
    with pytest.raises(RefitRequiredError, match=r"pooling.*call fit\(\) again"):
        f.transform(DOCS)  # 0.1: AttributeError: vocabulary_ (the live pooling, the fitted state)
    assert f.fit(DOCS).transform(DOCS).shape == (len(DOCS), 5)


# -- 14. feature names and the stages view ----------------------------------------------------------------

def test_feature_names_show_the_resolved_pooling(small_images):
    f = ImageFeaturizer("timm:test_vit", weights=None, layer=["blocks.1", -1]).fit([])
    names = f.get_feature_names_out()
    assert names[0] == "test_vit__blocks.1__cls_0" and names[-1] == "test_vit__pre_logits__none_63"


def test_layers_stages_view(capsys):
    from skfeaturize.cli import main

    assert main(["layers", "resnet50", "--stages", "--format", "csv"]) == 0
    table = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    assert list(table["name"]) == ["layer1", "layer2", "layer3", "layer4", "pre_logits"]


def test_warnings_point_at_the_users_line(small_images):
    """However deep inside skfeaturize (or a scikit-learn Pipeline) a warning starts, it names the caller's
    file and line, so a user can see which of their calls it is about."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    bf16 = {"weights": None, "precision": "bf16", "device": "cpu"}
    search = GridSearchCV(make_pipeline(ImageFeaturizer("timm:test_resnet", **bf16), LogisticRegression()),
                          {"logisticregression__C": [1.0]}, cv=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ImageFeaturizer("timm:test_resnet", **bf16).fit([])
        make_pipeline(ImageFeaturizer("timm:test_resnet", **bf16)).fit([])
        search.fit(small_images[:4], [0, 1, 0, 1])  # through joblib's sequential backend
    slow = [w for w in seen if "slower than fp32" in str(w.message)]
    assert len(slow) >= 4 and {w.filename for w in slow} == {__file__}, {(w.filename, w.lineno) for w in slow}
