"""Feature-request clustering measured on the evaluation corpus
(clustering/corpus/requests.txt: Chinese and English requests in groups,
paraphrases, cross-language pairs and near misses), by the workspace's
example clustering/examples/corpus.rs: B-cubed precision, recall and F1 of
the MinHash clusterer and of the embedding clusterer, whose threshold is
calibrated on half of the groups and reported on the other half."""

import json
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def figures() -> dict:
    subprocess.run([str(ROOT / "scripts" / "model")], check=True)
    # Release: the unoptimised encoder takes minutes for the corpus.
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "-p", "clustering", "--example", "corpus"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    d = json.loads(out)
    print(f"\ncorpus: {d['requests']} requests in {d['groups']} groups "
          f"({d['chinese']} Chinese), {d['seeds']} arrival orders; "
          f"threshold {d['threshold']:.3f} (calibration half)")
    for method in ("minhash", "embedding"):
        for part in ("calibration", "holdout", "all"):
            m = d[method][part]
            print(f"  {method:9} {part:11} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f}")
    print(f"  model load {d['model_load_ms']:.0f} ms, {d['embed_ms_per_request']:.2f} ms per request")
    g = d["glossary"]
    print(f"  glossary: {g['concepts']} concepts, {g['forms']} forms, named by "
          f"{g['requests_naming_one']} requests, {g['us_per_request']:.0f} us per request, "
          f"read back from a stored vector in {g['decode_us_per_request']:.0f} us")
    return d


def test_corpus_is_large_and_bilingual(figures):
    assert figures["requests"] >= 400
    assert figures["groups"] >= 100
    assert 0.3 <= figures["chinese"] / figures["requests"] <= 0.7


def test_embedding_clusters_better_than_minhash(figures):
    emb, mh = figures["embedding"], figures["minhash"]
    for part in ("holdout", "all"):
        assert emb[part]["f1"] >= mh[part]["f1"] + 0.2, part
        assert emb[part]["recall"] >= 2 * mh[part]["recall"], part
    # What the encoder with the glossary and the concept veto reaches today
    # (held out 0.848, whole corpus 0.790; without the veto 0.841 and 0.772,
    # the encoder alone 0.77 and 0.67); a drop is a regression.
    assert emb["holdout"]["f1"] >= 0.83
    assert emb["all"]["f1"] >= 0.77


def test_the_glossary_covers_most_requests(figures):
    g = figures["glossary"]
    assert g["concepts"] >= 150
    assert g["requests_naming_one"] >= 0.8 * figures["requests"]


@pytest.mark.xfail(strict=True, reason="issue 14's bar: USE multilingual v3 with the glossary "
                   "and the concept veto reaches 0.848 on held-out groups and "
                   "0.790 on the whole corpus")
def test_embedding_f1_reaches_the_issue_bar(figures):
    assert figures["embedding"]["holdout"]["f1"] >= 0.85
    assert figures["embedding"]["all"]["f1"] >= 0.85
