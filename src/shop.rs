//! The shop's own rules, named once in `knowledge/shop.toml` (service hours, dispatch cut-off,
//! free-shipping threshold, surcharged regions …) so that answers and templates refer to them
//! as `{shop.NAME}` instead of repeating them, and one edit changes every answer that states
//! them. Pure: `knowledge::load_dir` reads the file and fills the answers at load, so every
//! check (phrasing, `kb check`) sees the text the buyer gets.
//!
//! ```toml
//! [hours]                                   # also the hours the bot tells buyers agents are back
//! shifts = ["08:30-17:30", "17:30-23:00"]
//! utc_offset = "+08:00"
//!
//! [values]                                  # {shop.dispatch_cutoff} in any answer
//! dispatch_cutoff = "16:00"
//! free_shipping_over = "39元"
//! free_shipping_over_en = "39 yuan"         # NAME_en is used in English answers when present
//! ```
//!
//! `{shop.service_hours}` is written from `[hours]` (`08:30–23:00` when the shifts join up).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::hours::{HoursSettings, ServiceHours};

/// What `shop.toml` holds.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shop {
    /// Service hours; when absent, `[hours]` of xiaoer.toml (or its default) applies.
    #[serde(default)]
    pub hours: Option<HoursSettings>,
    /// Named values, `NAME_en` for an English answer's wording.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// The marker of a shop variable in an answer or template.
const PREFIX: &str = "{shop.";

impl Shop {
    /// The shop's service hours, when it names them.
    pub fn service_hours(&self) -> Option<Result<ServiceHours, String>> {
        self.hours
            .as_ref()
            .map(|settings| ServiceHours::parse(settings).map_err(|e| e.to_string()))
    }

    /// `text` with each `{shop.NAME}` replaced by its value (in English `NAME_en` when the shop
    /// wrote one); the names it does not know, when any.
    pub fn fill(&self, text: &str, english: bool) -> Result<String, Vec<String>> {
        if !text.contains(PREFIX) {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut unknown = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(PREFIX) {
            out.push_str(&rest[..start]);
            let after = &rest[start + PREFIX.len()..];
            let Some(end) = after.find('}') else {
                unknown.push(after.chars().take(20).collect());
                rest = "";
                break;
            };
            let name = &after[..end];
            match self.value(name, english) {
                Some(value) => out.push_str(&value),
                None => unknown.push(name.to_string()),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        if unknown.is_empty() {
            Ok(out)
        } else {
            Err(unknown)
        }
    }

    fn value(&self, name: &str, english: bool) -> Option<String> {
        if name == "service_hours" {
            let shifts = &self.hours.clone().unwrap_or_default().shifts;
            return Some(describe_shifts(shifts, english));
        }
        let english_value = english
            .then(|| self.values.get(&format!("{name}_en")))
            .flatten();
        english_value.or_else(|| self.values.get(name)).cloned()
    }
}

/// Shifts as a buyer reads them: joined where one ends as the next begins
/// (`08:30-17:30`, `17:30-23:00` → `08:30–23:00`).
fn describe_shifts(shifts: &[String], english: bool) -> String {
    let mut spans: Vec<(String, String)> = Vec::new();
    for shift in shifts {
        let Some((start, end)) = shift.split_once('-') else {
            continue;
        };
        let (start, end) = (start.trim().to_string(), end.trim().to_string());
        match spans.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => spans.push((start, end)),
        }
    }
    let spans: Vec<String> = spans.iter().map(|(s, e)| format!("{s}–{e}")).collect();
    spans.join(if english { ", " } else { "、" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Shop {
        toml::from_str(
            r#"
            [hours]
            shifts = ["09:00-12:00", "13:00-18:00", "18:00-22:00"]
            utc_offset = "+08:00"
            [values]
            dispatch_cutoff = "15:00"
            free_shipping_over = "49元"
            free_shipping_over_en = "49 yuan"
            "#,
        )
        .unwrap()
    }

    #[track_caller]
    fn check(text: &str, english: bool, expect: &str) {
        assert_eq!(shop().fill(text, english).unwrap(), expect);
    }

    #[test]
    fn answers_state_the_shops_own_values() {
        check(
            "当天{shop.dispatch_cutoff}前付款当天发",
            false,
            "当天15:00前付款当天发",
        );
        check("满{shop.free_shipping_over}包邮", false, "满49元包邮");
        check(
            "free over {shop.free_shipping_over}",
            true,
            "free over 49 yuan",
        );
        check("{name}有现货", false, "{name}有现货");
    }

    #[test]
    fn service_hours_are_written_from_the_shifts() {
        check(
            "客服在线时间{shop.service_hours}",
            false,
            "客服在线时间09:00–12:00、13:00–22:00",
        );
        assert_eq!(
            Shop::default().fill("{shop.service_hours}", true).unwrap(),
            "08:30–23:00"
        );
    }

    #[test]
    fn an_unknown_or_unclosed_name_is_reported() {
        assert_eq!(
            shop().fill("满{shop.free_over}包邮", false),
            Err(vec!["free_over".to_string()])
        );
        assert!(shop().fill("满{shop.free", false).is_err());
    }
}
