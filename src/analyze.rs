//! Splits normalised text into the units the matcher indexes and compares: Chinese characters
//! with their pinyin, jieba words, sound bigrams, and stemmed English words.
//!
//! Owns the one shared jieba instance (loading it costs ~0.2 s and tantivy clones tokenizers
//! per use, so it lives behind an `Arc`). Never normalises: callers pass normalised text.

use std::sync::Arc;

use jieba_rs::Jieba;
use pinyin::ToPinyin;
use rust_stemmers::{Algorithm, Stemmer};

use crate::normalize::is_cjk;

/// One comparable unit: a Chinese character or an English word stem (or a number).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub text: String,
    /// Toneless pinyin of a Chinese character; `None` for English and digits.
    pub sound: Option<&'static str>,
}

/// The units of one text, in reading order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// Characters and English stems, in order.
    pub units: Vec<Unit>,
    /// jieba words of the Chinese runs and the English stems.
    pub words: Vec<String>,
    /// Adjacent-unit pairs by sound (`fa piao`), so 发漂 and 发票 share a bigram.
    pub sound_bigrams: Vec<String>,
}

/// Segments text. Clone is cheap (shared dictionary).
#[derive(Clone)]
pub struct Analyzer {
    jieba: Arc<Jieba>,
    stemmer: Arc<Stemmer>,
}

impl Analyzer {
    /// Builds the analyzer with jieba's dictionary plus the shop's own words, and warms it.
    pub fn new(shop_words: &[String]) -> Self {
        let mut jieba = Jieba::new();
        for word in shop_words {
            jieba.add_word(word, Some(100_000), None);
        }
        let analyzer = Analyzer {
            jieba: Arc::new(jieba),
            stemmer: Arc::new(Stemmer::create(Algorithm::English)),
        };
        analyzer.analyze("预热分词器");
        analyzer
    }

    /// Splits `normalized` into units, words and sound bigrams.
    pub fn analyze(&self, normalized: &str) -> Analysis {
        let mut analysis = Analysis::default();
        for run in runs(normalized) {
            match run {
                Run::Chinese(text) => {
                    for c in text.chars() {
                        let sound = c.to_pinyin().map(|p| p.plain());
                        analysis.units.push(Unit {
                            text: c.to_string(),
                            sound,
                        });
                    }
                    for token in self.jieba.cut(text, true) {
                        analysis.words.push(token.word.to_string());
                    }
                }
                Run::Latin(word) => {
                    let stem = self.stemmer.stem(word).into_owned();
                    analysis.words.push(stem.clone());
                    analysis.units.push(Unit {
                        text: stem,
                        sound: None,
                    });
                }
            }
        }
        analysis.sound_bigrams = analysis
            .units
            .windows(2)
            .map(|pair| format!("{} {}", sound_of(&pair[0]), sound_of(&pair[1])))
            .collect();
        analysis
    }

    /// The terms the search index stores for `normalized`: `w:` words and `s:` sound bigrams.
    /// Also used to build queries, so both sides tokenize alike.
    pub fn index_terms(&self, normalized: &str) -> Vec<String> {
        let analysis = self.analyze(normalized);
        let mut terms: Vec<String> = analysis.words.iter().map(|w| format!("w:{w}")).collect();
        terms.extend(analysis.sound_bigrams.iter().map(|b| format!("s:{b}")));
        if analysis.units.len() == 1 {
            // A lone character or word still has to be findable.
            terms.push(format!("s:{}", sound_of(&analysis.units[0])));
        }
        terms
    }
}

/// The sound of a unit: pinyin for a character, the stem itself otherwise.
pub fn sound_of(unit: &Unit) -> &str {
    unit.sound.unwrap_or(&unit.text)
}

enum Run<'a> {
    Chinese(&'a str),
    Latin(&'a str),
}

/// Splits text into runs of Chinese characters and single Latin/digit words.
fn runs(text: &str) -> Vec<Run<'_>> {
    let mut out = Vec::new();
    // The open run: where it starts and whether it is Chinese.
    let mut open: Option<(usize, bool)> = None;
    let close = |from: usize, to: usize, chinese: bool| {
        let piece = &text[from..to];
        if chinese {
            Run::Chinese(piece)
        } else {
            Run::Latin(piece)
        }
    };
    for (i, c) in text.char_indices() {
        let kind = (!c.is_whitespace()).then(|| is_cjk(c));
        match (open, kind) {
            (Some((from, chinese)), Some(k)) if k != chinese => {
                out.push(close(from, i, chinese));
                open = Some((i, k));
            }
            (Some((from, chinese)), None) => {
                out.push(close(from, i, chinese));
                open = None;
            }
            (None, Some(k)) => open = Some((i, k)),
            _ => {}
        }
    }
    if let Some((from, chinese)) = open {
        out.push(close(from, text.len(), chinese));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzer() -> Analyzer {
        Analyzer::new(&["包邮".to_string()])
    }

    #[test]
    fn sound_alike_typos_share_sound_bigrams() {
        let analyzer = analyzer();
        for (typo, word) in [
            ("发漂", "发票"),
            ("包由", "包邮"),
            ("花被", "花呗"),
            ("尺吗", "尺码"),
        ] {
            assert_eq!(
                analyzer.analyze(typo).sound_bigrams,
                analyzer.analyze(word).sound_bigrams,
                "{typo} vs {word}"
            );
        }
    }

    #[test]
    fn mixed_text_splits_into_chinese_characters_and_english_stems() {
        let analysis = analyzer().analyze("t恤 shipping 包邮");
        let units: Vec<&str> = analysis.units.iter().map(|u| u.text.as_str()).collect();
        assert_eq!(units, ["t", "恤", "ship", "包", "邮"]);
        assert!(analysis.words.contains(&"包邮".to_string()));
    }

    #[test]
    fn a_single_word_query_still_has_index_terms() {
        assert!(!analyzer().index_terms("退").is_empty());
        assert!(analyzer().index_terms("").is_empty());
    }
}
