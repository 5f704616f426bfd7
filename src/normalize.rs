//! Text normalisation shared by indexing and queries: one function for both sides, so an
//! example question and a buyer's question that differ only in form look the same.
//!
//! Steps: NFKC (full-width → half-width), lower case, traditional → simplified, colloquial
//! forms → standard (from the lexicon), punctuation/emoji/control characters → space, filler
//! particles dropped. Pure: the lexicon is data handed in, never read here.

use std::collections::BTreeMap;

use ferrous_opencc::{config::BuiltinConfig, OpenCC};
use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// Word lists that shape normalisation and segmentation (`knowledge/lexicon.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lexicon {
    /// Shop words the segmenter must keep whole (包邮, 运费险 …).
    #[serde(default)]
    pub shop_words: Vec<String>,
    /// Particles dropped before matching (亲, 呢, 吗 …); Chinese only.
    #[serde(default)]
    pub fillers: Vec<String>,
    /// Colloquial or misspelt form → standard form. Chinese keys replace substrings,
    /// ASCII keys replace whole words.
    #[serde(default)]
    pub slang: BTreeMap<String, String>,
    /// Greetings dropped when a message says more than hello (你好, 在吗, hi …).
    #[serde(default)]
    pub greetings: Vec<String>,
    /// Words that show anger (垃圾, 骗子 …): the chat goes to a person with priority.
    #[serde(default)]
    pub anger: Vec<String>,
    /// Whole messages that leave a flow or the queue (算了, never mind …).
    #[serde(default)]
    pub leave: Vec<String>,
}

/// The buyer's language, judged from the script of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Zh,
    En,
}

/// Judges the language: English when Latin letters outnumber Chinese characters.
pub fn detect_lang(text: &str) -> Lang {
    let (mut cjk, mut latin) = (0usize, 0usize);
    for c in text.chars() {
        if is_cjk(c) {
            cjk += 1;
        } else if c.is_ascii_alphabetic() {
            latin += 1;
        }
    }
    // A Chinese character carries about as much as a three-letter word.
    if latin > 3 * cjk {
        Lang::En
    } else {
        Lang::Zh
    }
}

/// The language to answer a message in: its own when it has words, else the one the
/// conversation remembers (for "2", a photo, a button).
pub fn reply_lang(text: &str, remembered: Lang) -> Lang {
    if text.chars().any(|c| c.is_alphabetic()) {
        detect_lang(text)
    } else {
        remembered
    }
}

/// True for the CJK ideographs the matcher treats character by character.
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Normalises text for matching. Built once; cheap to share.
pub struct Normalizer {
    converter: OpenCC,
    /// Chinese slang sorted longest first, so 肿么办 wins over 肿么.
    zh_slang: Vec<(String, String)>,
    en_slang: BTreeMap<String, String>,
    fillers: Vec<String>,
    greetings: Vec<String>,
}

impl Normalizer {
    /// Builds a normaliser over `lexicon`.
    pub fn new(lexicon: &Lexicon) -> Result<Self> {
        let converter =
            OpenCC::from_config(BuiltinConfig::T2s).map_err(|e| Error::Converter(e.to_string()))?;
        let mut zh_slang: Vec<(String, String)> = Vec::new();
        let mut en_slang = BTreeMap::new();
        for (from, to) in &lexicon.slang {
            let (from, to) = (fold(from), fold(to));
            if from.is_ascii() {
                en_slang.insert(from, to);
            } else {
                zh_slang.push((from, to));
            }
        }
        zh_slang.sort_by_key(|(from, _)| std::cmp::Reverse(from.chars().count()));
        let mut fillers: Vec<String> = lexicon.fillers.iter().map(|f| fold(f)).collect();
        fillers.sort_by_key(|f| std::cmp::Reverse(f.chars().count()));
        let mut greetings: Vec<String> = lexicon.greetings.iter().map(|g| fold(g)).collect();
        greetings.sort_by_key(|g| std::cmp::Reverse(g.chars().count()));
        Ok(Normalizer {
            converter,
            zh_slang,
            en_slang,
            fillers,
            greetings,
        })
    }

    /// Returns the matching form of `text`: simplified, lower case, words separated by
    /// single spaces, no punctuation, no fillers. May be empty.
    pub fn normalize(&self, text: &str) -> String {
        let folded = fold(text);
        let simplified = if folded.chars().any(is_cjk) {
            self.converter.convert(&folded)
        } else {
            folded
        };
        let mut text = simplified;
        for (from, to) in &self.zh_slang {
            if text.contains(from.as_str()) {
                text = text.replace(from.as_str(), to);
            }
        }
        let mut without_greetings = text.clone();
        for greeting in &self.greetings {
            without_greetings = remove_phrase(&without_greetings, greeting);
        }
        let mut cleaned = self.drop_fillers(&without_greetings);
        if cleaned.trim().is_empty() {
            // Only a greeting: keep it, it is what the buyer said.
            cleaned = self.drop_fillers(&text);
        }
        let mut out = String::with_capacity(cleaned.len());
        for word in cleaned.split_whitespace() {
            let word = self.en_slang.get(word).map(String::as_str).unwrap_or(word);
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        out
    }

    fn drop_fillers(&self, text: &str) -> String {
        let mut text = text.to_string();
        for filler in &self.fillers {
            if text.contains(filler.as_str()) {
                text = text.replace(filler.as_str(), " ");
            }
        }
        text
    }
}

/// True when `phrase` occurs in `text`; an ASCII phrase only as whole words ("hi" in
/// "hi there" or "m码", not in "shipping").
pub fn contains_phrase(text: &str, phrase: &str) -> bool {
    !occurrences(text, phrase).is_empty()
}

/// Removes every occurrence of `phrase` (whole words for ASCII phrases).
fn remove_phrase(text: &str, phrase: &str) -> String {
    replace_phrase(text, phrase, " ")
}

/// Replaces every occurrence of `phrase` with ` with ` (whole words for ASCII phrases).
pub fn replace_phrase(text: &str, phrase: &str, with: &str) -> String {
    let found = occurrences(text, phrase);
    if found.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + found.len() * (with.len() + 2));
    let mut last = 0;
    for start in found {
        out.push_str(&text[last..start]);
        out.push(' ');
        out.push_str(with);
        out.push(' ');
        last = start + phrase.len();
    }
    out.push_str(&text[last..]);
    out
}

/// Byte offsets where `phrase` occurs, without overlaps. An ASCII phrase must not touch an
/// ASCII letter or digit on either side.
fn occurrences(text: &str, phrase: &str) -> Vec<usize> {
    if phrase.is_empty() {
        return Vec::new();
    }
    let word_like = phrase.bytes().any(|b| b.is_ascii_alphanumeric());
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(offset) = text[from..].find(phrase) {
        let start = from + offset;
        let end = start + phrase.len();
        let touches = |i: Option<&u8>| i.is_some_and(|b| b.is_ascii_alphanumeric());
        let whole = !word_like
            || (!touches(start.checked_sub(1).and_then(|i| bytes.get(i)))
                && !touches(bytes.get(end)));
        if whole {
            found.push(start);
            from = end;
        } else {
            from = start + text[start..].chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

/// NFKC, lower case, and everything that is neither a letter nor a digit turned into a space.
/// Apostrophes inside English words are dropped (don't → dont) so they stay one word.
fn fold(text: &str) -> String {
    let text = read_placeholders(text);
    let mut out = String::with_capacity(text.len());
    for c in text.nfkc() {
        if c.is_alphanumeric() {
            // Lower case may add a mark that is no letter (İ → i + U+0307): drop it, as a
            // second pass would.
            out.extend(c.to_lowercase().filter(|l| l.is_alphanumeric()));
        } else if c == '\'' || c == '’' {
            // Keep English contractions whole.
        } else {
            out.push(' ');
        }
    }
    out
}

/// Chat exports and channels anonymise what a buyer typed as bracketed placeholders
/// (`[订单x]`, `[数字x]`, `[金额x]`, `[地址x]`): a number or amount reads as a number, an order as
/// the word 订单, anything else (a name, an address, a link) as nothing, so the placeholder's
/// letters are never read as words of the question.
fn read_placeholders(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('[') && !text.contains('［') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['[', '［']) {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let bracket = after.chars().next().map_or(1, char::len_utf8);
        let inner_end = after[bracket..].find([']', '］']).map(|i| i + bracket);
        let placeholder = inner_end.and_then(|end| {
            let inner = &after[bracket..end];
            let name = inner.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
            let is_placeholder = name.chars().count() <= 4
                && !name.is_empty()
                && name.chars().all(is_cjk)
                && inner.len() > name.len();
            is_placeholder.then_some((name, end))
        });
        match placeholder {
            Some((name, end)) => {
                out.push_str(match name {
                    "数字" | "金额" | "日期" | "时间" | "电话" | "号码" => " 0 ",
                    "订单" => " 订单 ",
                    _ => " ",
                });
                let close = after[end..].chars().next().map_or(1, char::len_utf8);
                rest = &after[end + close..];
            }
            None => {
                out.push_str(&after[..bracket]);
                rest = &after[bracket..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// The 0-based index a buyer means by a numbered choice: "2", "第二个", "选2", "second".
pub fn ordinal(normalized: &str) -> Option<usize> {
    const ORDINALS: [&[&str]; 5] = [
        &["1", "一", "第一", "第一个", "第1个", "first", "one"],
        &["2", "二", "第二", "第二个", "第2个", "second", "two"],
        &["3", "三", "第三", "第三个", "第3个", "third", "three"],
        &["4", "四", "第四", "第四个", "第4个", "fourth", "four"],
        &["5", "五", "第五", "第五个", "第5个", "fifth", "five"],
    ];
    let compact: String = normalized.split_whitespace().collect();
    let compact = compact
        .trim_start_matches('选')
        .trim_end_matches(['项', '.', '。', '号']);
    ORDINALS.iter().position(|words| words.contains(&compact))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalizer() -> Normalizer {
        let lexicon = Lexicon {
            shop_words: vec![],
            fillers: vec!["亲".into(), "吗".into(), "呢".into(), "啊".into()],
            slang: [
                ("肿么".to_string(), "怎么".to_string()),
                ("u".into(), "you".into()),
            ]
            .into_iter()
            .collect(),
            greetings: vec!["你好".into(), "在吗".into(), "hi".into()],
            ..Lexicon::default()
        };
        Normalizer::new(&lexicon).unwrap()
    }

    #[track_caller]
    fn check(input: &str, expect: &str) {
        assert_eq!(normalizer().normalize(input), expect);
    }

    #[test]
    fn anonymised_placeholders_read_as_what_they_stand_for() {
        check("我的[订单x]今天能到吗", "我的 订单 今天能到");
        check("下单[数字x]天了", "下单 0 天了");
        check("寄到[地址x]，收件人[姓名x]", "寄到 收件人");
        check("[数字x", "数字x");
        check("选[1]还是[a]", "选 1 还是 a");
    }

    #[test]
    fn full_width_traditional_and_particles_fold_to_one_form() {
        check("親，能開發票嗎？", "能开发票");
        check("ＣＡＮ　Ｕ SHIP", "can you ship");
        check("肿么退货呢😀😀", "怎么退货");
        check("don't  ship!!!", "dont ship");
    }

    #[test]
    fn a_greeting_is_dropped_only_when_the_message_says_more() {
        check("你好，在吗？能开发票吗", "能开发票");
        check("在吗", "在");
        check("hi, do you ship today", "do you ship today");
        check("hi", "hi");
        check("shipping hi", "shipping");
    }

    #[test]
    fn control_characters_and_symbols_become_nothing() {
        check("\u{0}\u{7}发票\u{1b}[31m", "发票 31m");
        check("   ", "");
    }

    #[test]
    fn lower_case_leaves_no_stray_marks_so_normalising_twice_changes_nothing() {
        check("İPHONE", "iphone");
        check(&normalizer().normalize("İPHONE"), "iphone");
    }

    #[test]
    fn language_follows_the_script() {
        assert_eq!(detect_lang("can I get an invoice"), Lang::En);
        assert_eq!(detect_lang("能开发票吗 invoice"), Lang::Zh);
        assert_eq!(detect_lang("T恤红色M码"), Lang::Zh);
        assert_eq!(reply_lang("can I get an invoice", Lang::Zh), Lang::En);
        assert_eq!(reply_lang("2", Lang::En), Lang::En);
        assert_eq!(reply_lang("", Lang::Zh), Lang::Zh);
    }
}
