//! How alike two questions are, in [0, 1]: the matcher's re-ranking score, also used by
//! `xiaoer similarity`.
//!
//! A blend of weighted overlaps (characters with sound-alike credit, sound bigrams, jieba
//! words, words counted with their synonyms), an edit-distance term and the closeness of the
//! texts' meaning by word vectors (`meaning`). Weights come from how many documents of a
//! corpus use a term (inverse document frequency): words every topic uses (怎么, 可以) count
//! little, a word the corpus never saw counts fully — which is what lets an out-of-scope
//! question score low.

use std::collections::{HashMap, HashSet};

use crate::analyze::{sound_of, Analysis};
use crate::meaning::{share_group, Gist, MEANINGS};

/// The pair model: a logistic regression over `Parts::features`, fitted on the odd ids of
/// the ATEC pairs by `cargo run --release --example atec -- --fit` (measured on the even ids).
const PAIR_BIAS: f32 = -6.964;
const PAIR_WEIGHTS: [f32; PAIR_FEATURES] = [
    2.032, 1.574, -1.991, 2.554, 0.047, 0.668, -0.073, -0.621, 0.198, 0.726, -0.973, -2.418, 3.245,
    -0.701, -0.004, 0.189, 2.315, 2.475,
];
/// Number of features the pair model reads.
pub const PAIR_FEATURES: usize = 18;
/// Kinds of question, each by its words once normalised (the lexicon folds 如何 → 怎么,
/// 何时 → 多久 …): two questions of one kind are likelier to ask one thing. Chinese words
/// are found inside the text, English ones as whole words.
const QUESTION_KINDS: [&[&str]; 7] = [
    &["为什么", "原因", "怎么回事", "why"],
    &["怎么", "方法", "步骤", "how"],
    &["多久", "时间", "几天", "when"],
    &["多少", "几", "费用", "much", "many"],
    &["能", "是否", "会不会", "can", "could"],
    &["哪里", "在哪", "where"],
    &["什么", "what"],
];
/// Characters that turn a question around (开通 vs 不开通).
const NEGATIONS: [char; 5] = ['不', '没', '未', '无', '别'];
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
        let units: Vec<Weighted> = analysis
            .units
            .iter()
            .map(|u| {
                Weighted::new(
                    u.text.clone(),
                    sound_of(u),
                    self.weight(&format!("u:{}", u.text)),
                )
            })
            .collect();
        let set = |prefix: &str, items: &[String], with_sound: bool| {
            let mut items: Vec<Weighted> = items
                .iter()
                .map(|t| {
                    let sound = if with_sound {
                        sound_of_word(t)
                    } else {
                        String::new()
                    };
                    Weighted::new(t.clone(), &sound, self.weight(&format!("{prefix}{t}")))
                })
                .collect();
            items.sort_by(|a, b| a.text.cmp(&b.text));
            items.dedup_by(|a, b| a.text == b.text);
            items
        };
        // The units as heard: the sound of each character (so 包由 reads as 包邮), English
        // stems as they are.
        let heard: Vec<u64> = units.iter().map(|u| u.sound_key.unwrap_or(u.key)).collect();
        let words = set("w:", &analysis.words, true);
        let mut heard_set = heard.clone();
        heard_set.sort_unstable();
        heard_set.dedup();
        Features {
            chars: normalized.chars().filter(|c| !c.is_whitespace()).collect(),
            question_kinds: question_kinds(normalized),
            heard,
            heard_set,
            units,
            gist: MEANINGS.gist(words.iter().map(|w| (w.text.as_str(), w.weight))),
            synonyms: Synonyms::of(&words),
            words,
            bigrams: set("s:", &analysis.sound_bigrams, false),
        }
    }
}

/// The kinds of question a text asks, one bit per `QUESTION_KINDS` row.
fn question_kinds(normalized: &str) -> u8 {
    let asks = |word: &&str| {
        if word.is_ascii() {
            normalized.split_whitespace().any(|w| w == *word)
        } else {
            normalized.contains(*word)
        }
    };
    QUESTION_KINDS
        .iter()
        .enumerate()
        .filter(|(_, words)| words.iter().any(asks))
        .fold(0, |kinds, (bit, _)| kinds | 1 << bit)
}

/// The toneless pinyin of a word (发漂 and 发票 both `fapiao`); the word itself when it has
/// no Chinese.
fn sound_of_word(word: &str) -> String {
    use pinyin::ToPinyin;
    word.chars()
        .map(|c| {
            c.to_pinyin()
                .map(|p| p.plain().to_string())
                .unwrap_or_else(|| c.to_string())
        })
        .collect()
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
    /// Hash of `text`, so the hot comparison is of integers.
    key: u64,
    /// Hash of the pinyin when the item has one (Chinese characters and words).
    sound_key: Option<u64>,
    weight: f32,
}

impl Weighted {
    fn new(text: String, sound: &str, weight: f32) -> Weighted {
        let sound_key = (!sound.is_empty() && sound != text).then(|| hash(sound));
        Weighted {
            key: hash(&text),
            sound_key,
            text,
            weight,
        }
    }
}

fn hash(text: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(text)
}

/// The synonym groups of a text's words: each word's (in order), and all of them, so that
/// asking whether a word has a synonym in another text is one merge of sorted lists.
#[derive(Debug, Clone, Default)]
struct Synonyms {
    of_item: Vec<&'static [u32]>,
    all: Box<[u32]>,
}

impl Synonyms {
    fn of(words: &[Weighted]) -> Synonyms {
        let of_item: Vec<&'static [u32]> = words
            .iter()
            .map(|w| MEANINGS.synonym_groups(&w.text))
            .collect();
        let mut all: Vec<u32> = of_item.iter().copied().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        Synonyms {
            of_item,
            all: all.into(),
        }
    }
}

/// A text prepared for `score`.
#[derive(Debug, Clone, Default)]
pub struct Features {
    chars: Vec<char>,
    /// The units by sound, in order; and sorted without repeats.
    heard: Vec<u64>,
    heard_set: Vec<u64>,
    question_kinds: u8,
    units: Vec<Weighted>,
    words: Vec<Weighted>,
    bigrams: Vec<Weighted>,
    synonyms: Synonyms,
    /// The weighted mean of the words' vectors.
    gist: Option<Gist>,
}

impl Features {
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }
}

/// The overlap of two texts, part by part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Parts {
    /// Weighted Dice overlap of characters/stems, with sound-alike credit.
    pub units: f32,
    /// Share of the first text's unit weight found in the second.
    pub first_in_second: f32,
    /// Share of the second text's unit weight found in the first.
    pub second_in_first: f32,
    pub bigrams: f32,
    pub words: f32,
    /// 1 − normalised edit distance of the character sequences.
    pub edit: f32,
    /// Weight of the heaviest unit either text has and the other lacks entirely.
    pub unmatched_peak: f32,
    /// Weight of the heaviest word either text has and the other lacks (by sound too).
    pub unmatched_word_peak: f32,
    /// 1 when exactly one of the texts contains a negation.
    pub negation_differs: f32,
    /// Shorter length over longer, in characters.
    pub length_ratio: f32,
    /// Jaccard overlap of the sets of units by sound, unweighted.
    pub sound_jaccard: f32,
    /// Longest run of units (by sound) both texts share, over the shorter length.
    pub common_run: f32,
    /// Word weight the other text lacks, on the side that lacks less.
    pub unmatched_words: f32,
    /// 1 when both texts ask the same kind of question (how, why, when …).
    pub same_question_kind: f32,
    /// Cosine of the texts' gists (0.5 when a text has none): alike in meaning, whatever the
    /// words.
    pub gist_cosine: f32,
    /// Share of word weight found in the other text as the same word, a sound-alike or a
    /// synonym, on the side that finds less.
    pub synonym_cover: f32,
}

impl Parts {
    /// The pair model's inputs, in `PAIR_WEIGHTS` order.
    pub fn features(&self) -> [f32; PAIR_FEATURES] {
        [
            self.units,
            self.bigrams,
            self.words,
            self.edit,
            self.first_in_second.min(self.second_in_first),
            self.first_in_second.max(self.second_in_first),
            self.unmatched_peak,
            self.negation_differs,
            self.length_ratio,
            self.unmatched_word_peak,
            self.units * self.units,
            self.units * self.edit,
            self.sound_jaccard,
            self.common_run,
            self.unmatched_words,
            self.same_question_kind,
            self.gist_cosine,
            self.synonym_cover,
        ]
    }

    /// The probability that the two texts ask the same thing: the similarity of two questions.
    pub fn blend(&self) -> f32 {
        let z: f32 = PAIR_BIAS
            + self
                .features()
                .iter()
                .zip(PAIR_WEIGHTS)
                .map(|(x, w)| x * w)
                .sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }
}

/// How alike two prepared texts are, in [0, 1]; symmetric. A text with nothing to compare
/// (empty once normalised) is like no other: 0.
pub fn score(a: &Features, b: &Features) -> f32 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    parts(a, b).blend()
}

/// The overlap parts of two prepared texts.
pub fn parts(a: &Features, b: &Features) -> Parts {
    if a.is_empty() || b.is_empty() {
        return Parts::default();
    }
    let units = overlap(&a.units, &b.units, unit_credit, None);
    let edit = strsim::generic_levenshtein(&a.chars, &b.chars) as f32
        / a.chars.len().max(b.chars.len()).max(1) as f32;
    let words = overlap(
        &a.words,
        &b.words,
        unit_credit,
        Some((&a.synonyms, &b.synonyms)),
    );
    let negated = |f: &Features| f.chars.iter().any(|c| NEGATIONS.contains(c));
    let (short, long) = (
        a.chars.len().min(b.chars.len()),
        a.chars.len().max(b.chars.len()).max(1),
    );
    Parts {
        unmatched_peak: units.unmatched_peak,
        negation_differs: (negated(a) != negated(b)) as u8 as f32,
        length_ratio: short as f32 / long as f32,
        units: units.dice(),
        first_in_second: units.first_share(),
        second_in_first: units.second_share(),
        bigrams: overlap(&a.bigrams, &b.bigrams, exact_credit, None).dice(),
        words: words.dice(),
        unmatched_word_peak: words.unmatched_peak,
        edit: 1.0 - edit,
        sound_jaccard: jaccard(&a.heard_set, &b.heard_set),
        common_run: longest_common_run(&a.heard, &b.heard) as f32
            / a.units.len().min(b.units.len()).max(1) as f32,
        unmatched_words: (words.first_total - words.first_matched)
            .min(words.second_total - words.second_matched)
            .max(0.0),
        same_question_kind: (a.question_kinds & b.question_kinds != 0) as u8 as f32,
        gist_cosine: match (&a.gist, &b.gist) {
            (Some(a), Some(b)) => a.cosine(b),
            _ => 0.5,
        },
        synonym_cover: words.first_found_share().min(words.second_found_share()),
    }
}

/// Jaccard overlap of two sorted sets without repeats.
fn jaccard(a: &[u64], b: &[u64]) -> f32 {
    let (mut i, mut j, mut shared) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                shared += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - shared;
    if union == 0 {
        0.0
    } else {
        shared as f32 / union as f32
    }
}

/// Length of the longest run both sequences contain.
fn longest_common_run<T: PartialEq + Copy>(a: &[T], b: &[T]) -> usize {
    // Run lengths ending at the previous character of `a`, one per position in `b`.
    let mut runs = vec![0usize; b.len() + 1];
    let mut longest = 0;
    for &x in a {
        let mut diagonal = 0;
        for (j, &y) in b.iter().enumerate() {
            let above = runs[j + 1];
            runs[j + 1] = if x == y { diagonal + 1 } else { 0 };
            longest = longest.max(runs[j + 1]);
            diagonal = above;
        }
    }
    longest
}

/// The units an entry's texts use, for asking how much of a question the entry explains.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Hashes, as in `Weighted::key` and `Weighted::sound_key`.
    units: HashSet<u64>,
    sounds: HashSet<u64>,
    words: HashSet<u64>,
    bigrams: HashSet<u64>,
}

impl Vocabulary {
    pub fn from_analyses<'a>(analyses: impl IntoIterator<Item = &'a Analysis>) -> Self {
        let mut vocabulary = Vocabulary::default();
        for analysis in analyses {
            for unit in &analysis.units {
                vocabulary.units.insert(hash(&unit.text));
                vocabulary.sounds.insert(hash(sound_of(unit)));
            }
            vocabulary
                .words
                .extend(analysis.words.iter().map(|w| hash(w)));
            vocabulary
                .bigrams
                .extend(analysis.sound_bigrams.iter().map(|b| hash(b)));
        }
        vocabulary
    }

    /// Total weight of the text's words and sound bigrams the vocabulary shares: evidence
    /// that grows with every specific term matched, however long the text around them.
    pub fn matched_mass(&self, text: &Features) -> f32 {
        let words: f32 = text
            .words
            .iter()
            .filter(|w| self.words.contains(&w.key))
            .map(|w| w.weight)
            .sum();
        let bigrams: f32 = text
            .bigrams
            .iter()
            .filter(|b| self.bigrams.contains(&b.key))
            .map(|b| b.weight)
            .sum();
        words + bigrams
    }

    /// Share of the text's unit weight the vocabulary explains (sound-alikes for less).
    pub fn coverage(&self, text: &Features) -> f32 {
        let total: f32 = text.units.iter().map(|u| u.weight).sum();
        if total <= 0.0 {
            return 0.0;
        }
        let explained: f32 = text
            .units
            .iter()
            .map(|u| {
                if self.units.contains(&u.key) {
                    u.weight
                } else if u.sound_key.is_some_and(|k| self.sounds.contains(&k)) {
                    u.weight * SOUND_ALIKE_CREDIT
                } else {
                    0.0
                }
            })
            .sum();
        explained / total
    }
}

fn exact_credit(a: &Weighted, b: &Weighted) -> f32 {
    if a.key == b.key {
        1.0
    } else {
        0.0
    }
}

/// Same character 1; same sound (a typo of the ear) or near spelling (of the hand) less.
fn unit_credit(a: &Weighted, b: &Weighted) -> f32 {
    if a.key == b.key {
        1.0
    } else if a.sound_key.is_some() && a.sound_key == b.sound_key {
        SOUND_ALIKE_CREDIT
    } else if a.text.len() > 3
        && a.text.len().abs_diff(b.text.len()) <= 2
        // Misspellings keep the first letter; checking it first spares most Jaro-Winklers.
        && a.text.as_bytes().first() == b.text.as_bytes().first()
        && a.text.is_ascii()
        && b.text.is_ascii()
        && strsim::jaro_winkler(&a.text, &b.text) >= SPELLING_MIN_JARO_WINKLER
    {
        SPELLING_CREDIT
    } else {
        0.0
    }
}

/// Matched and total weights of both sides of an overlap.
struct Overlap {
    first_matched: f32,
    first_total: f32,
    second_matched: f32,
    second_total: f32,
    /// Weight of the heaviest item that got no credit at all.
    unmatched_peak: f32,
    /// Weights of the items found in the other side at all, or as a synonym.
    first_found: f32,
    second_found: f32,
}

impl Overlap {
    fn dice(&self) -> f32 {
        let total = self.first_total + self.second_total;
        if total <= 0.0 {
            // Neither side has any (a one-character text has no bigrams): nothing differs.
            1.0
        } else {
            ((self.first_matched + self.second_matched) / total).min(1.0)
        }
    }

    fn first_share(&self) -> f32 {
        share(self.first_matched, self.first_total)
    }

    fn first_found_share(&self) -> f32 {
        share(self.first_found, self.first_total)
    }

    fn second_found_share(&self) -> f32 {
        share(self.second_found, self.second_total)
    }

    fn second_share(&self) -> f32 {
        share(self.second_matched, self.second_total)
    }
}

/// `part` over `total`, at most 1; 0 when there is nothing.
fn share(part: f32, total: f32) -> f32 {
    if total <= 0.0 {
        0.0
    } else {
        (part / total).min(1.0)
    }
}

/// Weighted overlap where each item takes the best credit any counterpart gives it; with
/// `synonyms`, an item with no credit is still found when a counterpart shares a group.
fn overlap(
    a: &[Weighted],
    b: &[Weighted],
    credit: impl Fn(&Weighted, &Weighted) -> f32,
    synonyms: Option<(&Synonyms, &Synonyms)>,
) -> Overlap {
    let best = |item: &Weighted, others: &[Weighted]| {
        others
            .iter()
            .map(|o| credit(item, o))
            .fold(0.0f32, f32::max)
    };
    let mut overlap = Overlap {
        first_matched: 0.0,
        first_total: 0.0,
        second_matched: 0.0,
        second_total: 0.0,
        unmatched_peak: 0.0,
        first_found: 0.0,
        second_found: 0.0,
    };
    let none = Synonyms::default();
    let (a_synonyms, b_synonyms) = synonyms.unwrap_or((&none, &none));
    for (items, others, synonyms, other_synonyms, first) in [
        (a, b, a_synonyms, b_synonyms, true),
        (b, a, b_synonyms, a_synonyms, false),
    ] {
        for (i, item) in items.iter().enumerate() {
            let credit = best(item, others);
            let found = credit > 0.0
                || synonyms
                    .of_item
                    .get(i)
                    .is_some_and(|mine| share_group(mine, &other_synonyms.all));
            if credit == 0.0 {
                overlap.unmatched_peak = overlap.unmatched_peak.max(item.weight);
            }
            let (matched, total, found_weight) = if first {
                (
                    &mut overlap.first_matched,
                    &mut overlap.first_total,
                    &mut overlap.first_found,
                )
            } else {
                (
                    &mut overlap.second_matched,
                    &mut overlap.second_total,
                    &mut overlap.second_found,
                )
            };
            *matched += credit * item.weight;
            *total += item.weight;
            if found {
                *found_weight += item.weight;
            }
        }
    }
    overlap
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
    fn identical_texts_score_high_and_unrelated_ones_near_zero() {
        let score = scorer(&["能开发票", "包邮", "怎么退货"]);
        assert!(
            score("能开发票", "能开发票") > 0.8,
            "{}",
            score("能开发票", "能开发票")
        );
        assert!(score("能开发票", "今天天气") < 0.1);
    }

    #[test]
    fn a_sound_alike_typo_scores_above_a_different_topic() {
        let score = scorer(&["能开发票", "包邮", "能退货"]);
        assert!(score("能开发漂", "能开发票") > score("能开发漂", "能退货") + 0.3);
        assert!(score("包由", "包邮") > 0.7);
    }

    #[test]
    fn a_synonym_or_a_word_of_like_meaning_counts_almost_as_the_same_word() {
        let score = scorer(&["衣服有毛病", "衣服有几种颜色", "商品损坏", "商品缺货"]);
        // 瑕疵 and 毛病 share no character or sound: only their meaning links them.
        assert!(score("衣服有瑕疵", "衣服有毛病") > 0.45);
        assert!(score("衣服有瑕疵", "衣服有毛病") > 3.0 * score("衣服有瑕疵", "衣服有几种颜色"));
        assert!(score("东西坏了", "商品损坏") > 3.0 * score("东西坏了", "商品缺货"));
    }

    #[test]
    fn the_longest_common_run_is_found_anywhere_in_either_text() {
        let chars = |t: &str| t.chars().collect::<Vec<char>>();
        assert_eq!(
            longest_common_run(&chars("能开发票吗"), &chars("怎么开发票")),
            3
        );
        assert_eq!(longest_common_run(&chars("包邮"), &chars("退货")), 0);
        assert_eq!(longest_common_run(&chars(""), &chars("退货")), 0);
    }

    #[test]
    fn questions_of_one_kind_share_a_kind_and_english_words_count_whole() {
        assert_ne!(
            question_kinds("为什么没发货") & question_kinds("为什么还不发"),
            0
        );
        assert_eq!(
            question_kinds("为什么没发货") & question_kinds("多久发货"),
            0
        );
        assert_ne!(
            question_kinds("how do i return it") & question_kinds("怎么退货"),
            0
        );
        assert_eq!(question_kinds("show me"), 0);
    }

    #[test]
    fn score_is_symmetric() {
        let score = scorer(&["能开发票", "包邮"]);
        assert!((score("发票怎么开", "能开发票") - score("能开发票", "发票怎么开")).abs() < 1e-6);
    }
}
