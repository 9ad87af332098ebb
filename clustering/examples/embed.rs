//! Prints the token ids and the encoder's embedding ([`Embedder::sentence`]) of each line of a file as JSON, for
//! the equivalence check against the reference encoder
//! (`tests/python/test_embed.py`).
//!
//! usage: cargo run -p clustering --example embed -- <file, one text a line>
//!
//! Output: `[{"text": …, "ids": […], "embedding": [512 floats]}, …]`. The
//! model folder is the one `scripts/model` fills.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let file = std::env::args().nth(1).ok_or("usage: embed <file>")?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let embedder =
        clustering::embed::Embedder::load(&clustering::embed::model_dir(&workspace.join(".data")))?;
    let texts = std::fs::read_to_string(file)?;
    let out: Vec<serde_json::Value> = texts
        .lines()
        .map(|text| {
            serde_json::json!({
                "text": text,
                "ids": embedder.token_ids(text),
                "embedding": embedder.sentence(text).0,
            })
        })
        .collect();
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
