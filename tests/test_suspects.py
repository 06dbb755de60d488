import numpy as np
import pandas as pd

from training.models.families import new_model
from training.evaluation.cv import cross_validate
from training.evaluation.suspects import find_suspects

LABELS = ["drill", "boilerplate", "other"]
TEMPLATES = {
    "drill": ["The navy began live-fire drills near the island {}.", "Troops joined the annual war games in sector {}.",
              "The exercise tested air defence readiness at range {}."],
    "boilerplate": ["Subscribe to our newsletter for updates {}.", "Read more stories like this {}.",
                    "Support independent journalism, donate today {}."],
    "other": ["The central bank raised interest rates by {} points.", "Shares fell sharply on the market {}.",
              "The football club won the cup final {}."],
}


def planted(n_articles: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids, texts, labels, articles = [], [], [], []
    for a in range(n_articles):
        for label, templates in TEMPLATES.items():
            for k, template in enumerate(templates):
                ids.append(f"a{a}:{len(ids)}")
                texts.append(template.format(int(rng.integers(1, 999))))
                labels.append(label)
                articles.append(f"a{a}")
    noisy = list(labels)
    # one planted error in each of 8 of the 9 templates, in a random article
    flipped = [int(rng.integers(0, n_articles)) * 9 + template for template in range(8)]
    for i in flipped:
        noisy[i] = LABELS[(LABELS.index(labels[i]) + 1) % 3]
    return ids, texts, noisy, articles, set(int(i) for i in flipped)


def test_planted_label_errors_are_found_by_cleanlab():
    ids, texts, noisy, articles, flipped = planted()
    records = pd.DataFrame({"text": texts, "article_id": articles})
    fold_of = np.array([int(a[1:]) % 4 for a in articles])
    everything = np.arange(len(texts))  # the out-of-fold store covers every sentence
    proba = cross_validate(records, noisy, fold_of, np.ones(len(texts), dtype=bool), everything, noisy, LABELS,
                           new_model("tfidf_logreg", {}, LABELS, 0)).probabilities
    rows = find_suspects(ids, texts, noisy, proba, LABELS)
    assert rows and {r["method"] for r in rows} == {"cleanlab"}
    found = {ids.index(r["id"]) for r in rows}
    assert flipped <= found  # every planted error is flagged
    assert len(found - flipped) <= 4  # and few clean ones are
    for r in rows:
        if ids.index(r["id"]) in flipped:
            assert r["suggested"] != r["label"]
    assert [r["score"] for r in rows] == sorted(r["score"] for r in rows)
