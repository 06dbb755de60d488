"""Pages in, pages out: the record interface, vote parity, context blocks, save/load, classify_articles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.models.blocks import (PageCoherence, PagePosition, Recurrence, RuleVotes, WholeSentenceEmbedding,
                             whole_sentences)
from training.core.config import load_config
from training.data.corpus import segment_article
from training.models.families import family_module, new_model
from training.labelling.stage import build
from training.serving.predict import SentenceClassifier
from training.data.records import as_records, page_layout

from conftest import ROOT, write_config

LABELS = ["diplomatic_contact", "deployment", "drill", "boilerplate", "other"]
TINY = {
    "tfidf_logreg": {},
    "minilm_head": {"max_length": 32},
    "minilm_hybrid": {"max_length": 32, "min_df": 1},
    "minilm_finetune": {"epochs": 1, "max_length": 32, "batch_size": 8},
}


@pytest.fixture(scope="module")
def seeds_labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("context")
    return build(load_config(write_config(folder, "context")))


def test_records_from_strings_are_one_sentence_pages_and_tables_keep_their_pages():
    records = as_records(["a", "b"])
    assert list(records["index"]) == [0, 0] and records["article_id"].nunique() == 2
    table = as_records(pd.DataFrame({"text": ["x", "y", "z"], "article_id": ["p", "p", "q"]}))
    assert list(table["index"]) == [0, 1, 0]  # page order = row order when no index is given
    layout = page_layout(as_records(pd.DataFrame({"text": list("abcd"), "article_id": ["p", "q", "p", "p"],
                                                  "index": [2, 0, 0, 1]})))
    assert list(layout.previous) == [3, -1, -1, 2] and list(layout.next) == [-1, -1, 3, 0]
    assert list(layout.from_end) == [0, 0, 2, 1]
    with pytest.raises(ValueError, match="'text' column"):
        as_records(pd.DataFrame({"body": ["x"]}))


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.slow) if f == "minilm_finetune" else f
                                    for f in sorted(TINY)])  # fine-tuning trains the whole encoder: slow
def test_strings_and_one_sentence_page_records_give_the_same_answer(family, seeds_labelled):
    train = seeds_labelled.records
    model = new_model(family, TINY[family], seeds_labelled.labels, seed=0).fit(train, seeds_labelled.train_labels)
    texts = ["Shoigu held a telephone conversation with Austin.", "Subscribe to our newsletter",
             "The brigade was redeployed to the northern border."]
    from_strings = model.predict_proba(texts)
    records = pd.DataFrame({"text": texts, "article_id": ["p1", "p2", "p3"], "index": [0, 0, 0]})
    assert from_strings.shape == (3, len(seeds_labelled.labels))
    assert np.allclose(from_strings, model.predict_proba(records), atol=1e-9)
    assert np.allclose(from_strings.sum(axis=1), 1)


@pytest.mark.parametrize("corpus", ["seeds", pytest.param("main job", marks=pytest.mark.slow)])
def test_model_rule_votes_equal_the_labelling_stage_on_every_training_sentence(corpus, seeds_labelled):
    """Parity on the seeds, and on the main job's own corpus (seeds + ../shared corpora when present)."""
    labelled = seeds_labelled if corpus == "seeds" else build(
        load_config(ROOT / "configs" / "default.yaml", ["evaluation.find_label_issues=false"]))
    block = RuleVotes(str(ROOT / "configs/rules/default.yaml")).fit(labelled.records)
    assert np.array_equal(block.label_matrix(labelled.records), labelled.matrix)
    shuffled = np.random.default_rng(0).permutation(len(labelled.records))  # row order must not matter
    assert np.array_equal(block.label_matrix(labelled.records.iloc[shuffled]), labelled.matrix[shuffled])


def test_recurrence_is_learned_in_fit_so_one_new_page_sees_it():
    chrome = "Share this article"
    pages = [segment_article(f"p{i}", f"Troops moved north {i}.\n{chrome}\nThe talks went on {i}.") for i in range(3)]
    training = as_records([s for page in pages for s in page])
    new_page = as_records(segment_article("new", f"A drill began.\n{chrome}\nMore rain is due."))
    block = RuleVotes(str(ROOT / "configs/rules/default.yaml")).fit(training)
    names = [rule.name for _, rule in block.ruleset_.rules]
    fired = block.label_matrix(new_page)[:, names.index("recurring_line")] >= 0
    assert list(fired) == [False, True, False]  # seen on 3 training pages
    unfitted = RuleVotes(str(ROOT / "configs/rules/default.yaml")).fit(new_page)
    assert not (unfitted.label_matrix(new_page)[:, names.index("recurring_line")] >= 0).any()
    # pages scored together do not count for each other: a page's votes never depend on its batch
    twice = as_records(segment_article("a", f"{chrome}\nx.") + segment_article("b", f"{chrome}\ny."))
    assert not (unfitted.label_matrix(twice)[:, names.index("recurring_line")] >= 0).any()
    counts = Recurrence().fit(training).transform(new_page)
    assert list(counts[:, 2]) == [0.0, 1.0, 0.0]  # ">= 3 pages" only for the chrome line


def test_position_block_sees_the_page_not_the_row_order():
    records = pd.DataFrame({"text": ["c", "a", "b"], "article_id": ["p"] * 3, "index": [2, 0, 1]})
    features = PagePosition().fit_transform(records)
    assert list(features[:, 0]) == [0, 1, 0] and list(features[:, 1]) == [1, 0, 0]  # first / last


def test_context_blocks_are_switched_by_config_keys():
    from training.models.heads import BlendedClassifier

    module = family_module("minilm_hybrid")
    blended = module.build_pipeline(module.Params(), 0)
    assert isinstance(blended, BlendedClassifier) and blended.weights == [1.0, 1.0, 1.0]
    reads = {name: list(blocks) for name, _, blocks in blended.heads}
    assert [name for name, *_ in blended.blocks][-3:] == ["ngrams", "chars", "embedding_summary"]
    assert reads["linear"] == [name for name, *_ in blended.blocks][:-1]  # every block but the trees' summary
    assert reads["perceptron"] == reads["linear"][:-2]  # the dense blocks only, no n-grams
    assert reads["tree"] == ["embedding_summary", "coherence", "votes", "position", "shape", "recurrence"]
    only_trees = module.build_pipeline(module.Params(mlp_weight=0), 0)
    assert [name for name, _, _ in only_trees.heads] == ["linear", "tree"] and only_trees.weights == [1.0, 1.0]
    full = module.build_pipeline(module.Params(mlp_weight=0, tree_weight=0), 0).named_steps["features"].transformer_list
    bare = module.build_pipeline(module.Params(mlp_weight=0, tree_weight=0, neighbour_embeddings=0, neighbour_votes=0,
                                               page_embedding=False, whole_sentence=False, coherence=False,
                                               inner_layers=False, position=False, shape=False, recurrence=False,
                                               char_ngram_max=0),
                                 0).named_steps["features"].transformer_list
    assert [name for name, _ in full] == ["embedding", "inner_layers", "page", "whole_sentence", "coherence", "votes", "position",
                                          "shape", "recurrence", "ngrams", "chars"]
    assert reads["perceptron"] == [name for name, _ in full][:-2]
    assert [name for name, _ in bare] == ["embedding", "votes", "ngrams"]
    assert dict(full)["embedding"].neighbours == 1 and dict(bare)["embedding"].neighbours == 0
    records = pd.DataFrame({"text": ["a b", "c d", "e f"], "article_id": ["p"] * 3, "index": [0, 1, 2]})
    wide = dict(full)["embedding"].set_params(neighbours=2, pooling="concat").transform(records)
    own = wide[:, :384]
    assert wide.shape == (3, 384 * 5)  # own, 2 previous, 2 next
    assert np.array_equal(wide[2, 384:768], own[1]) and np.array_equal(wide[2, 768:1152], own[0])
    assert not wide[0, 384:1152].any()  # nothing before the first sentence
    pooled = dict(full)["embedding"].set_params(neighbours=1, pooling="mean").transform(records)
    assert pooled.shape == (3, 384 * 2)
    assert np.allclose(pooled[1, 384:], (own[0] + own[2]) / 2) and np.allclose(pooled[0, 384:], own[1] / 2)


def test_wrapped_lines_read_their_whole_sentence():
    page = ["U.S. Defense Secretary Lloyd Austin spoke with his", "counterpart in Moscow on", "the risks of the war.",
            "Share this", "subscribe now", "A new sentence."]
    records = pd.DataFrame({"text": page, "article_id": ["p"] * 6, "index": range(6)})
    whole = whole_sentences(records)
    joined = "U.S. Defense Secretary Lloyd Austin spoke with his counterpart in Moscow on the risks of the war."
    assert whole[:3] == [joined] * 3
    assert whole[3:5] == ["Share this subscribe now"] * 2  # no sentence end and the next line goes on in lower case
    assert whole[5] == "A new sentence."
    shuffled = records.iloc[[4, 0, 5, 2, 1, 3]]  # row order must not matter: the page order does
    assert whole_sentences(shuffled) == [whole[r] for r in [4, 0, 5, 2, 1, 3]]
    block = WholeSentenceEmbedding(max_length=32)
    vectors = block.fit_transform(records)
    assert np.array_equal(vectors[0], vectors[2]) and not np.array_equal(vectors[0], vectors[5])


def test_coherence_marks_the_line_that_strays_from_the_story():
    page = ["Russian and Chinese warships began joint naval drills in the Sea of Japan on Monday.",
            "The exercise involves ten warships and thirty aircraft, the defence ministry said.",
            "Sailors will practise anti-submarine warfare and air defence during the drills.",
            "Get our best recipes for chocolate cake delivered to your inbox every week!",
            "The naval drills will last five days, the ministry said in a statement."]
    records = pd.DataFrame({"text": page, "article_id": ["p"] * 5, "index": range(5)})
    features = PageCoherence(max_length=64).fit_transform(records)
    assert features.shape == (5, 8)
    assert features[:, 1].argmin() == 3  # least like the page's prose
    alone = PageCoherence(max_length=64).fit_transform(records.iloc[[3]])
    assert alone.shape == (1, 8) and np.isfinite(alone).all()


def test_params_import_without_torch():
    import subprocess
    import sys

    code = ("import sys; from training.models.families import family_module as f\n"
            "for name in ('tfidf_logreg', 'minilm_head', 'minilm_hybrid', 'minilm_finetune'): f(name).Params()\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.fixture(scope="module")
def hybrid_classifier(seeds_labelled, tmp_path_factory):
    """A page-aware hybrid fitted on the seeds, saved and loaded back; (loaded, fitted)."""
    from training.tracking import export

    params = family_module("minilm_hybrid").Params.model_validate(TINY["minilm_hybrid"])
    fitted = new_model("minilm_hybrid", TINY["minilm_hybrid"], seeds_labelled.labels, 0).fit(
        seeds_labelled.records, seeds_labelled.train_labels)
    folder = tmp_path_factory.mktemp("hybrid-export")
    config = {"model": {"params": params.model_dump()}, "seed": 0}
    export.write(folder, fitted, "minilm_hybrid", seeds_labelled.labels, config, {})
    model, manifest = export.load_family_model(folder)
    return SentenceClassifier(model, manifest, str(folder)), fitted


def test_saved_then_loaded_model_gives_identical_probabilities_on_a_page(hybrid_classifier):
    loaded, fitted = hybrid_classifier
    page = as_records(segment_article("page", (ROOT / "seeds" / "001_f506e2632bf4118f.txt").read_text()))
    assert np.array_equal(loaded.model.predict_proba(page), fitted.predict_proba(page))
    assert (Path(loaded.path) / "rules.yaml").read_text() == (ROOT / "configs/rules/default.yaml").read_text()


def test_classify_articles_handles_crlf_and_pages_without_line_breaks(hybrid_classifier):
    clf, _ = hybrid_classifier
    lf = "U.S. troops arrived in Poland.\nSubscribe to our newsletter\nThe talks in Geneva went on. Nobody left."
    crlf = lf.replace("\n", "\r\n")
    flat = lf.replace("\n", " ")
    pages = clf.classify_articles([lf, crlf, flat, ""])
    assert [len(p) for p in pages] == [4, 4, 3, 0]  # without line breaks the unpunctuated line joins the next
    for text, sentences in zip([lf, crlf, flat], pages):
        assert [s["index"] for s in sentences] == list(range(len(sentences)))
        for s in sentences:
            assert text[s["start"]:s["end"]] == s["text"] and "\r" not in s["text"]
            assert s["label"] in clf.labels and abs(sum(s["probabilities"].values()) - 1) < 1e-9
    assert [s["text"] for s in pages[0]] == [s["text"] for s in pages[1]]
    assert [s["label"] for s in pages[0]] == [s["label"] for s in pages[1]]  # CRLF is the same page
    assert clf.classify_article(crlf) == pages[1]
    # context matters: the same sentence alone can be scored differently from inside its page
    alone = clf.predict_proba(["Subscribe to our newsletter"])[0]
    assert alone != pages[0][1]["probabilities"]
    with pytest.raises(TypeError, match="single string"):
        clf.classify_articles(lf)


def test_blended_heads_read_their_blocks_and_average_by_weight():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer

    from training.models.blocks import PrincipalComponents
    from training.models.heads import BlendedClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 6)), np.array(["a", "b", "c"] * 20)
    first, second = FunctionTransformer(lambda m: m[:, :3]), FunctionTransformer(lambda m: m[:, 3:])
    heads = [("one", LogisticRegression(C=0.1), ["first"]), ("both", LogisticRegression(C=10), ["first", "second"])]
    blended = BlendedClassifier([("first", first), ("second", second)], heads, [1.0, 3.0]).fit(X, y)
    alone = [LogisticRegression(C=0.1).fit(X[:, :3], y), LogisticRegression(C=10).fit(X, y)]
    expected = 0.25 * alone[0].predict_proba(X[:, :3]) + 0.75 * alone[1].predict_proba(X)
    assert np.allclose(blended.predict_proba(X), expected)
    assert list(blended.predict(X)) == list(blended.classes_[expected.argmax(axis=1)])
    with pytest.raises(ValueError, match="2 heads but 1 weights"):
        BlendedClassifier([("first", first)], heads, [1.0]).fit(X, y)
    assert PrincipalComponents(32).fit(X[:5]).transform(X).shape == (60, 5)  # capped by the rows it saw
