//! The shops the repository holds, for the examples that measure or fit across them: the
//! sample shop and each `tests/shops/NAME/` with a `knowledge/` folder and an `eval.jsonl`.

use std::path::PathBuf;

/// (name, knowledge folder, evaluation file) of the sample shop and every fixture shop,
/// relative to the repository root.
pub fn shop_files() -> anyhow::Result<Vec<(String, PathBuf, PathBuf)>> {
    let mut shops = vec![(
        "sample".to_string(),
        PathBuf::from("knowledge"),
        PathBuf::from("tests/data/eval.jsonl"),
    )];
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir("tests/shops")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("eval.jsonl").exists())
        .collect();
    fixtures.sort();
    for dir in fixtures {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        shops.push((name, dir.join("knowledge"), dir.join("eval.jsonl")));
    }
    Ok(shops)
}
