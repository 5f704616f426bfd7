//! The ATEC 2018 question-matching benchmark: how well `xiaoer similarity`'s scoring tells
//! paraphrases from non-paraphrases, beside two lexical baselines, in one run.
//!
//!     cargo run --release --example atec -- ../shared/data/atec/atec_nlp_sim_train.csv
//!
//! All 39,346 pairs; odd ids choose each scorer's best F1 threshold, even ids are measured
//! (F1 at that threshold, and ROC-AUC). The scorer under test is `Engine::similarity_scores`,
//! the function behind `xiaoer similarity`.
//!
//! `--fit` refits the pair model on the odd ids. `ATEC_DUMP=FILE` also writes each pair's
//! id, label, normalised texts, words, pair features and baseline scores, tab-separated, for
//! trying new features elsewhere before building them in.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use jieba_rs::Jieba;
use xiaoer::config::Settings;
use xiaoer::engine::Engine;
use xiaoer::similarity::PAIR_FEATURES;

struct Pair {
    id: u64,
    a: String,
    b: String,
    same: bool,
}

fn main() -> anyhow::Result<()> {
    let fit = std::env::args().any(|a| a == "--fit");
    let file = std::env::args()
        .skip(1)
        .find(|a| a != "--fit")
        .unwrap_or_else(|| "../shared/data/atec/atec_nlp_sim_train.csv".into());
    let text = std::fs::read_to_string(&file)?;
    let pairs: Vec<Pair> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let id = fields.next()?.trim_start_matches('\u{feff}').parse().ok()?;
            let (a, b, label) = (fields.next()?, fields.next()?, fields.next()?);
            Some(Pair {
                id,
                a: a.into(),
                b: b.into(),
                same: label.trim() == "1",
            })
        })
        .collect();
    println!(
        "{} pairs from {file} ({} paraphrases)",
        pairs.len(),
        pairs.iter().filter(|p| p.same).count()
    );

    let settings = Settings::default();
    let engine = Engine::load(Path::new(&settings.kb), settings.thresholds)?;
    let texts: Vec<(String, String)> = pairs.iter().map(|p| (p.a.clone(), p.b.clone())).collect();
    let started = std::time::Instant::now();
    let xiaoer = engine.similarity_scores(&texts);
    let xiaoer_time = started.elapsed();
    if fit {
        // Fit the pair model on the odd ids only.
        let parts = engine.similarity_parts(&texts);
        let rows: Vec<([f32; PAIR_FEATURES], f32)> = pairs
            .iter()
            .zip(&parts)
            .filter(|(p, _)| p.id % 2 == 1)
            .map(|(p, parts)| (parts.features(), p.same as u8 as f32))
            .collect();
        let (bias, weights) = fit_logistic(&rows);
        println!(
            "PAIR_BIAS: f32 = {bias:.3};\nPAIR_WEIGHTS: [f32; PAIR_FEATURES] = {weights:.3?};"
        );
        return Ok(());
    }
    let jieba = Jieba::new();
    let tfidf = tfidf_cosine(&jieba, &pairs);
    let jaccard: Vec<f32> = pairs.iter().map(|p| char_jaccard(&p.a, &p.b)).collect();
    if let Ok(path) = std::env::var("ATEC_DUMP") {
        use std::fmt::Write as _;
        let parts = engine.similarity_parts(&texts);
        let mut out = String::new();
        for (i, p) in pairs.iter().enumerate() {
            let prep = |t: &str| {
                let n = engine.normalizer().normalize(t);
                let w = engine.analyzer().analyze(&n).words.join(" ");
                (n, w)
            };
            let ((na, wa), (nb, wb)) = (prep(&p.a), prep(&p.b));
            let f: Vec<String> = parts[i].features().iter().map(|x| x.to_string()).collect();
            writeln!(
                out,
                "{}\t{}\t{na}\t{nb}\t{wa}\t{wb}\t{}\t{}\t{}",
                p.id,
                p.same as u8,
                f.join("\t"),
                tfidf[i],
                jaccard[i]
            )
            .ok();
        }
        std::fs::write(path, out)?;
    }

    println!(
        "{:<28} {:>6} {:>9} {:>8}",
        "scorer", "F1", "threshold", "ROC-AUC"
    );
    for (name, scores) in [
        ("xiaoer similarity", &xiaoer),
        ("jieba TF-IDF cosine", &tfidf),
        ("character Jaccard", &jaccard),
    ] {
        let (tune, test): (Vec<usize>, Vec<usize>) =
            (0..pairs.len()).partition(|&i| pairs[i].id % 2 == 1);
        let threshold = best_threshold(&tune, scores, &pairs);
        let f1 = f1_at(&test, scores, &pairs, threshold);
        let auc = roc_auc(&test, scores, &pairs);
        println!("{name:<28} {f1:>6.3} {threshold:>9.3} {auc:>8.3}");
    }
    println!(
        "xiaoer similarity: {:.1} µs per pair",
        xiaoer_time.as_secs_f64() * 1e6 / pairs.len() as f64
    );
    Ok(())
}

fn tfidf_cosine(jieba: &Jieba, pairs: &[Pair]) -> Vec<f32> {
    let tokenize = |t: &str| -> Vec<String> {
        jieba
            .cut(t, true)
            .into_iter()
            .map(|w| w.word.trim().to_lowercase())
            .filter(|w| !w.is_empty() && w.chars().any(char::is_alphanumeric))
            .collect()
    };
    let docs: Vec<(Vec<String>, Vec<String>)> = pairs
        .iter()
        .map(|p| (tokenize(&p.a), tokenize(&p.b)))
        .collect();
    let mut df: HashMap<&str, f32> = HashMap::new();
    for (a, b) in &docs {
        for doc in [a, b] {
            for w in doc.iter().collect::<HashSet<_>>() {
                *df.entry(w).or_default() += 1.0;
            }
        }
    }
    let n = (docs.len() * 2) as f32;
    let vector = |doc: &[String]| -> HashMap<String, f32> {
        let mut v = HashMap::new();
        for w in doc {
            *v.entry(w.clone()).or_insert(0.0) +=
                (n / (1.0 + df.get(w.as_str()).copied().unwrap_or(0.0))).ln();
        }
        v
    };
    docs.iter()
        .map(|(a, b)| {
            let (va, vb) = (vector(a), vector(b));
            let dot: f32 = va
                .iter()
                .map(|(w, x)| x * vb.get(w).copied().unwrap_or(0.0))
                .sum();
            let norm = |v: &HashMap<String, f32>| v.values().map(|x| x * x).sum::<f32>().sqrt();
            let denominator = norm(&va) * norm(&vb);
            if denominator > 0.0 {
                dot / denominator
            } else {
                0.0
            }
        })
        .collect()
}

fn char_jaccard(a: &str, b: &str) -> f32 {
    let set = |t: &str| {
        t.chars()
            .filter(|c| c.is_alphanumeric())
            .collect::<HashSet<char>>()
    };
    let (a, b) = (set(a), set(b));
    let union = a.union(&b).count();
    if union == 0 {
        0.0
    } else {
        a.intersection(&b).count() as f32 / union as f32
    }
}

fn f1_at(indices: &[usize], scores: &[f32], pairs: &[Pair], threshold: f32) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0.0, 0.0, 0.0);
    for &i in indices {
        match (scores[i] >= threshold, pairs[i].same) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fn_ += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fn_)
    }
}

fn best_threshold(indices: &[usize], scores: &[f32], pairs: &[Pair]) -> f32 {
    (1..100)
        .map(|t| t as f32 / 100.0)
        .max_by(|&x, &y| {
            f1_at(indices, scores, pairs, x).total_cmp(&f1_at(indices, scores, pairs, y))
        })
        .unwrap_or(0.5)
}

/// Probability that a random paraphrase scores above a random non-paraphrase (ties count half).
fn roc_auc(indices: &[usize], scores: &[f32], pairs: &[Pair]) -> f64 {
    let mut ranked: Vec<(f32, bool)> = indices
        .iter()
        .map(|&i| (scores[i], pairs[i].same))
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut positives, mut i) = (0.0f64, 0.0f64, 0);
    while i < ranked.len() {
        let mut j = i;
        while j < ranked.len() && ranked[j].0 == ranked[i].0 {
            j += 1;
        }
        let average_rank = (i + j + 1) as f64 / 2.0;
        for item in &ranked[i..j] {
            if item.1 {
                rank_sum += average_rank;
                positives += 1.0;
            }
        }
        i = j;
    }
    let negatives = ranked.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

fn fit_logistic(rows: &[([f32; PAIR_FEATURES], f32)]) -> (f32, [f32; PAIR_FEATURES]) {
    let (mut bias, mut weights) = (0.0f32, [0.0f32; PAIR_FEATURES]);
    let n = rows.len().max(1) as f32;
    for _ in 0..40_000 {
        let (mut grad_bias, mut grad) = (0.0f32, [0.0f32; PAIR_FEATURES]);
        for (x, y) in rows {
            let z = bias + x.iter().zip(&weights).map(|(x, w)| x * w).sum::<f32>();
            let error = 1.0 / (1.0 + (-z).exp()) - y;
            grad_bias += error;
            for i in 0..PAIR_FEATURES {
                grad[i] += error * x[i];
            }
        }
        bias -= 2.0 * grad_bias / n;
        for i in 0..PAIR_FEATURES {
            weights[i] -= 2.0 * grad[i] / n;
        }
    }
    (bias, weights)
}
