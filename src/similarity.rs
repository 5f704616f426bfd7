//! How alike two questions are, in [0, 1]: the matcher's re-ranking score, also used by
//! `xiaoer similarity`.
//!
//! A blend of weighted overlaps (characters with sound-alike credit, sound bigrams, jieba
//! words) and an edit-distance term. Weights come from how many documents of a corpus use a
//! term (inverse document frequency): words every topic uses (怎么, 可以) count little, a word
//! the corpus never saw counts fully — which is what lets an out-of-scope question score low.

use std::collections::HashMap;

use crate::analyze::{sound_of, Analysis};

/// Share of the score each part carries; they sum to 1.
const W_UNITS: f32 = 0.40;
const W_BIGRAMS: f32 = 0.25;
const W_WORDS: f32 = 0.20;
const W_EDIT: f32 = 0.15;
/// Credit for a character that only sounds like its counterpart (发漂 ~ 发票).
const SOUND_ALIKE_CREDIT: f32 = 0.85;
/// Credit for an English word close in spelling (invoise ~ invoice).
const SPELLING_CREDIT: f32 = 0.8;
const SPELLING_MIN_JARO_WINKLER: f64 = 0.9;
/// Lowest weight a term can have, so common terms still count a little.
const MIN_WEIGHT: f32 = 0.05;

/// Inverse document frequencies of a corpus.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    document_frequency: HashMap<String, u32>,
    n_documents: u32,
}

impl Weights {
    /// Counts, for each term, how many documents use it. A document is any set of texts
    /// (an entry's examples, or one question).
    pub fn from_documents<'a>(documents: impl IntoIterator<Item = Vec<&'a Analysis>>) -> Self {
        let mut weights = Weights::default();
        for document in documents {
            weights.n_documents += 1;
            let mut terms: Vec<String> = document.iter().flat_map(|a| keys(a)).collect();
            terms.sort();
            terms.dedup();
            for term in terms {
                *weights.document_frequency.entry(term).or_default() += 1;
            }
        }
        weights
    }

    /// Weight of a term in (0, 1]: 1 for a term no document uses.
    pub fn weight(&self, key: &str) -> f32 {
        let n = self.n_documents as f32;
        let df = self.document_frequency.get(key).copied().unwrap_or(0) as f32;
        let top = (1.0 + n / 0.5).ln();
        if top <= 0.0 {
            return 1.0;
        }
        ((1.0 + n / (df + 0.5)).ln() / top).max(MIN_WEIGHT)
    }

    /// Prepares a text for scoring: its terms with their weights.
    pub fn features(&self, normalized: &str, analysis: &Analysis) -> Features {
        let units = analysis
            .units
            .iter()
            .map(|u| Weighted {
                weight: self.weight(&format!("u:{}", u.text)),
                sound: sound_of(u).to_string(),
                text: u.text.clone(),
            })
            .collect();
        let set = |prefix: &str, items: &[String]| {
            let mut items: Vec<Weighted> = items
                .iter()
                .map(|t| Weighted {
                    weight: self.weight(&format!("{prefix}{t}")),
                    sound: String::new(),
                    text: t.clone(),
                })
                .collect();
            items.sort_by(|a, b| a.text.cmp(&b.text));
            items.dedup_by(|a, b| a.text == b.text);
            items
        };
        Features {
            chars: normalized.chars().filter(|c| !c.is_whitespace()).collect(),
            units,
            words: set("w:", &analysis.words),
            bigrams: set("s:", &analysis.sound_bigrams),
        }
    }
}

/// The keys a text contributes to the document-frequency table.
fn keys(analysis: &Analysis) -> impl Iterator<Item = String> + '_ {
    let units = analysis.units.iter().map(|u| format!("u:{}", u.text));
    let words = analysis.words.iter().map(|w| format!("w:{w}"));
    let bigrams = analysis.sound_bigrams.iter().map(|b| format!("s:{b}"));
    units.chain(words).chain(bigrams)
}

#[derive(Debug, Clone)]
struct Weighted {
    text: String,
    /// Pinyin for Chinese characters, the text otherwise; empty for words and bigrams.
    sound: String,
    weight: f32,
}

/// A text prepared for `score`.
#[derive(Debug, Clone, Default)]
pub struct Features {
    chars: Vec<char>,
    units: Vec<Weighted>,
    words: Vec<Weighted>,
    bigrams: Vec<Weighted>,
}

impl Features {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// How alike two prepared texts are, in [0, 1]; symmetric.
pub fn score(a: &Features, b: &Features) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let units = soft_dice(&a.units, &b.units, unit_credit);
    let bigrams = soft_dice(&a.bigrams, &b.bigrams, exact_credit);
    let words = soft_dice(&a.words, &b.words, exact_credit);
    let edit = strsim::generic_levenshtein(&a.chars, &b.chars) as f32
        / a.chars.len().max(b.chars.len()).max(1) as f32;
    W_UNITS * units + W_BIGRAMS * bigrams + W_WORDS * words + W_EDIT * (1.0 - edit)
}

fn exact_credit(a: &Weighted, b: &Weighted) -> f32 {
    if a.text == b.text {
        1.0
    } else {
        0.0
    }
}

/// Same character 1; same sound (a typo of the ear) or near spelling (of the hand) less.
fn unit_credit(a: &Weighted, b: &Weighted) -> f32 {
    if a.text == b.text {
        1.0
    } else if a.sound == b.sound && a.sound != a.text {
        SOUND_ALIKE_CREDIT
    } else if a.text.is_ascii()
        && b.text.is_ascii()
        && a.text.len() > 3
        && strsim::jaro_winkler(&a.text, &b.text) >= SPELLING_MIN_JARO_WINKLER
    {
        SPELLING_CREDIT
    } else {
        0.0
    }
}

/// Weighted Dice overlap where each item takes the best credit any counterpart gives it.
fn soft_dice(a: &[Weighted], b: &[Weighted], credit: fn(&Weighted, &Weighted) -> f32) -> f32 {
    let total: f32 = a.iter().chain(b).map(|t| t.weight).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let best = |item: &Weighted, others: &[Weighted]| {
        others.iter().map(|o| credit(item, o)).fold(0.0f32, f32::max) * item.weight
    };
    let matched: f32 = a.iter().map(|t| best(t, b)).sum::<f32>() + b.iter().map(|t| best(t, a)).sum::<f32>();
    (matched / total).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::Analyzer;

    fn scorer(corpus: &[&str]) -> impl Fn(&str, &str) -> f32 {
        let analyzer = Analyzer::new(&[]);
        let analyses: Vec<Analysis> = corpus.iter().map(|t| analyzer.analyze(t)).collect();
        let weights = Weights::from_documents(analyses.iter().map(|a| vec![a]));
        move |a: &str, b: &str| {
            let fa = weights.features(a, &analyzer.analyze(a));
            let fb = weights.features(b, &analyzer.analyze(b));
            score(&fa, &fb)
        }
    }

    #[test]
    fn identical_texts_score_one_and_unrelated_ones_near_zero() {
        let score = scorer(&["能开发票", "包邮", "怎么退货"]);
        assert!((score("能开发票", "能开发票") - 1.0).abs() < 1e-4);
        assert!(score("能开发票", "今天天气") < 0.2);
    }

    #[test]
    fn a_sound_alike_typo_scores_above_a_different_topic() {
        let score = scorer(&["能开发票", "包邮", "能退货"]);
        assert!(score("能开发漂", "能开发票") > score("能开发漂", "能退货") + 0.3);
        assert!(score("包由", "包邮") > 0.7);
    }

    #[test]
    fn score_is_symmetric() {
        let score = scorer(&["能开发票", "包邮"]);
        assert!((score("发票怎么开", "能开发票") - score("能开发票", "发票怎么开")).abs() < 1e-6);
    }
}
