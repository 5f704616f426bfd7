//! The approved-phrasing check (`knowledge/phrasing.toml`): every text the bot sends passes
//! it. Returns every violation with its rule, the offending span and, where the rulebooks
//! give one, the approved wording. Pure: the rules are data handed in.

use std::ops::Range;

use serde::Deserialize;

use crate::normalize::{detect_lang, Lang};

/// The rules and the set phrases exempt from them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhrasingRules {
    /// Set phrases the rulebooks use themselves (不用客气); exempt from every rule.
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub rule: Vec<Rule>,
}

/// One rule: phrases a reply must not contain, or must contain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub lang: RuleLang,
    /// Where the rule comes from (POLICIES.md section, seed).
    pub source: String,
    /// What the rule asks, in English (`kb check`, the English console).
    pub message: String,
    /// The same in Chinese, for the Chinese console.
    pub message_zh: String,
    /// Forbidden: Chinese anywhere, English as whole words in any case.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// The approved wording for every phrase of the rule.
    #[serde(default)]
    pub replacement: Option<String>,
    /// The approved wording per phrase, in `phrases` order.
    #[serde(default)]
    pub replacements: Vec<String>,
    /// At least one of these must appear.
    #[serde(default)]
    pub must_contain: Vec<String>,
}

/// Which replies a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleLang {
    Zh,
    En,
}

/// A broken rule in one text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: String,
    /// The rule's message in English.
    pub message: String,
    /// The rule's message in Chinese.
    pub message_zh: String,
    pub source: String,
    /// Byte range of the offending phrase (empty for a missing required phrase).
    pub span: Range<usize>,
    pub found: String,
    pub replacement: Option<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.rule)?;
        if !self.found.is_empty() {
            write!(f, ": \"{}\"", self.found)?;
        }
        if let Some(replacement) = &self.replacement {
            write!(f, " → say \"{replacement}\"")?;
        }
        Ok(())
    }
}

/// Every violation of `rules` in `text`. Chinese rules apply to a text in Chinese, English
/// rules to a text in English.
pub fn check(rules: &PhrasingRules, text: &str) -> Vec<Violation> {
    check_with(rules, text, true)
}

/// Like `check`, for a piece of a reply (a template with slots, a list line): only the
/// forbidden phrases apply, not what a whole reply must contain.
pub fn check_fragment(rules: &PhrasingRules, text: &str) -> Vec<Violation> {
    check_with(rules, text, false)
}

fn check_with(rules: &PhrasingRules, text: &str, whole: bool) -> Vec<Violation> {
    let lang = match detect_lang(text) {
        Lang::Zh => RuleLang::Zh,
        Lang::En => RuleLang::En,
    };
    let exempt: Vec<Range<usize>> = rules
        .allowed
        .iter()
        .flat_map(|phrase| {
            text.match_indices(phrase.as_str())
                .map(|(at, p)| at..at + p.len())
        })
        .collect();
    let mut violations = Vec::new();
    for rule in rules.rule.iter().filter(|r| r.lang == lang) {
        for (index, phrase) in rule.phrases.iter().enumerate() {
            for span in find(text, phrase, lang) {
                if exempt
                    .iter()
                    .any(|e| e.start <= span.start && span.end <= e.end)
                {
                    continue;
                }
                let replacement = rule
                    .replacements
                    .get(index)
                    .or(rule.replacement.as_ref())
                    .cloned();
                violations.push(violation(rule, span.clone(), &text[span], replacement));
            }
        }
        if whole
            && !rule.must_contain.is_empty()
            && !rule.must_contain.iter().any(|p| text.contains(p.as_str()))
        {
            violations.push(violation(rule, 0..0, "", None));
        }
    }
    violations.sort_by_key(|v| v.span.start);
    violations
}

fn violation(
    rule: &Rule,
    span: Range<usize>,
    found: &str,
    replacement: Option<String>,
) -> Violation {
    Violation {
        rule: rule.id.clone(),
        message: rule.message.clone(),
        message_zh: rule.message_zh.clone(),
        source: rule.source.clone(),
        span,
        found: found.to_string(),
        replacement,
    }
}

/// Where `phrase` occurs: anywhere for Chinese, as whole words (ignoring case) for English.
fn find(text: &str, phrase: &str, lang: RuleLang) -> Vec<Range<usize>> {
    if lang == RuleLang::Zh {
        return text
            .match_indices(phrase)
            .map(|(at, p)| at..at + p.len())
            .collect();
    }
    let lower = text.to_ascii_lowercase();
    let phrase = phrase.to_ascii_lowercase();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'\'';
    let bytes = lower.as_bytes();
    lower
        .match_indices(phrase.as_str())
        .map(|(at, p)| at..at + p.len())
        .filter(|span| {
            let before = span.start.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(span.end).copied();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> PhrasingRules {
        let text = include_str!("../knowledge/phrasing.toml");
        toml::from_str(text).expect("phrasing.toml parses")
    }

    #[track_caller]
    fn check_rule(text: &str, rule: Option<&str>) {
        let violations = check(&rules(), text);
        let ids: Vec<&str> = violations.iter().map(|v| v.rule.as_str()).collect();
        match rule {
            Some(rule) => assert!(ids.contains(&rule), "{text}: expected {rule}, got {ids:?}"),
            None => assert!(ids.is_empty(), "{text}: expected none, got {violations:?}"),
        }
    }

    // Each rule: a failing example and its approved counterpart, from the rulebooks.
    #[test]
    fn every_rule_has_a_failing_and_a_passing_example() {
        check_rule("你好，请问你要什么颜色？", Some("address_as_nin"));
        check_rule("您好，请问您要什么颜色？", None);
        check_rule("亲，不好意思，这个价格不能便宜了", Some("no_bu_phrases"));
        check_rule("非常抱歉，您看中的这款价格已经无法再低了", None);
        check_rule("您好，这个地址快递到不了", Some("no_bu_phrases"));
        check_rule(
            "非常抱歉，这个地址快递暂时无法到达，您看可以换个地址吗",
            None,
        );
        check_rule("您好，这款不支持货到付款", Some("no_bu_at_all"));
        check_rule("不用客气，能帮到您很开心", None);
        check_rule("哦，您等一下", Some("no_bare_fillers"));
        check_rule("嗯，知道了，您稍等", Some("no_bare_fillers"));
        check_rule("好的，请您稍等", None);
        check_rule("您放心，保证明天可以到", Some("no_promises"));
        check_rule("您放心，我们尽快安排，正常今天可以发出", None);
        check_rule("这是快递的事，您找快递，我们不负责", Some("no_blame"));
        check_rule("您好，已经发货了", None);
        check_rule("好的，已经备注了", Some("keep_nin"));
    }

    #[test]
    fn english_rules_match_whole_words_in_any_case() {
        check_rule("No, we can't do that.", Some("no_blunt_refusal_en"));
        check_rule(
            "Sorry, cash on delivery is unavailable; you can pay by card instead.",
            None,
        );
        check_rule("We guarantee it arrives tomorrow.", Some("no_promises_en"));
        check_rule("Please note the invoice is mailed within a month.", None);
        check_rule("Nothing is lost: we keep your order.", None);
    }

    #[test]
    fn a_violation_names_the_span_and_the_approved_wording() {
        let text = "亲，不好意思";
        let violation = check(&rules(), text)
            .into_iter()
            .find(|v| v.rule == "no_bu_phrases")
            .unwrap();
        assert_eq!(&text[violation.span.clone()], "不好意思");
        assert_eq!(violation.replacement.as_deref(), Some("非常抱歉"));
    }
}
