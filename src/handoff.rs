//! Handoffs to people: why a chat goes to the queue, how urgent it is, and the one-line
//! summary an agent reads at a glance. Pure; the store keeps the records.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dialog::{Attachment, Flow};
use crate::engine::Considered;

/// Why the bot handed a chat over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The bot was unsure of the question.
    LowConfidence,
    /// The buyer asked for a person.
    AskedForPerson,
    /// A complaint (投诉, 差评 threats).
    Complaint,
    /// The buyer is angry (insults, shouting, many "！").
    Angry,
    /// A flow ended where a person decides (compensation, reship, refund).
    FlowDecision,
    /// A flow step could not get a usable answer.
    FlowStuck,
    /// The buyer asked again what the bot could not answer.
    Repeated,
    /// A message too long for the bot to read reliably.
    TooLong,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LowConfidence => "low_confidence",
            Reason::AskedForPerson => "asked_for_person",
            Reason::Complaint => "complaint",
            Reason::Angry => "angry",
            Reason::FlowDecision => "flow_decision",
            Reason::FlowStuck => "flow_stuck",
            Reason::Repeated => "repeated",
            Reason::TooLong => "too_long",
        }
    }

    /// Serious complaints are handled first (POLICIES.md §4).
    pub fn priority(self) -> Priority {
        match self {
            Reason::Complaint | Reason::Angry => Priority::Urgent,
            _ => Priority::Normal,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Reason::LowConfidence => "机器人未能确定",
            Reason::AskedForPerson => "要求人工",
            Reason::Complaint => "投诉",
            Reason::Angry => "情绪激动",
            Reason::FlowDecision => "售后待处理",
            Reason::FlowStuck => "售后流程受阻",
            Reason::Repeated => "重复提问",
            Reason::TooLong => "长留言",
        }
    }
}

/// Queue order: urgent before normal, then oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Urgent = 1,
    Normal = 2,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Normal => "normal",
        }
    }
}

/// A handoff as the conversation engine creates it (the store adds chat, id, time, and the
/// transcript it already holds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewHandoff {
    pub reason: Reason,
    pub priority: Priority,
    pub summary: String,
    /// The topics the bot considered for the message that caused it.
    pub candidates: Vec<Considered>,
    /// What a flow collected before the handoff.
    pub collected: BTreeMap<String, String>,
    pub evidence: Vec<Attachment>,
}

impl NewHandoff {
    pub fn new(reason: Reason, message: &str, candidates: Vec<Considered>) -> NewHandoff {
        NewHandoff {
            reason,
            priority: reason.priority(),
            summary: summary(reason, message, None, &BTreeMap::new()),
            candidates,
            collected: BTreeMap::new(),
            evidence: Vec::new(),
        }
    }

    /// A handoff from inside a flow, carrying what it collected.
    pub fn from_flow(
        reason: Reason,
        message: &str,
        flow: &Flow,
        collected: BTreeMap<String, String>,
        evidence: Vec<Attachment>,
    ) -> NewHandoff {
        NewHandoff {
            reason,
            priority: reason.priority(),
            summary: summary(reason, message, Some(flow), &collected),
            candidates: Vec::new(),
            collected,
            evidence,
        }
    }
}

/// Characters of the buyer's message quoted in a summary.
const QUOTE_CHARS: usize = 40;

/// One line an agent reads at a glance: `[投诉] 商品破损 · 订单 123… · 希望 换货 · “买家的话”`.
/// Flow and remedy are named as `dialogs/` names them, never by their codes.
pub fn summary(
    reason: Reason,
    message: &str,
    flow: Option<&Flow>,
    collected: &BTreeMap<String, String>,
) -> String {
    let mut parts = vec![format!("[{}]", reason.label())];
    parts.extend(flow.map(|f| f.title.clone()));
    if let Some(order) = collected.get("order").filter(|o| o.as_str() != "-") {
        parts.push(format!("订单 {order}"));
    }
    if let Some(remedy) = collected.get("remedy") {
        // The code stays only if an edit removed the option while the buyer was in the flow.
        let label = flow
            .and_then(|f| f.step("remedy"))
            .and_then(|step| step.option_label(remedy))
            .map_or_else(|| remedy.clone(), |label| label.zh);
        parts.push(format!("希望 {label}"));
    }
    let quote: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut quote: String = quote.chars().take(QUOTE_CHARS).collect();
    if message.chars().count() > QUOTE_CHARS {
        quote.push('…');
    }
    if !quote.is_empty() {
        parts.push(format!("“{quote}”"));
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flow with one choice step, as `dialogs/` writes it.
    fn damaged_item() -> Flow {
        let text = r#"
id = "damaged_item"
title = "商品破损"
title_en = "Item arrived damaged"
source = "test"
starts = ["damaged_item"]
responsible = "courier"

[[step]]
id = "remedy"
label = "希望的处理方式"
label_en = "Remedy asked for"
collect = "choice"
prompt = "请您回复序号：\n1. 补偿部分货款\n2. 换货"
prompt_en = "Please reply with a number:\n1. Partial compensation\n2. Exchange"
reask = "请您回复 1 或 2。"
reask_en = "Please reply 1 or 2."
next = "recorded"

[[step.choice]]
value = "compensation"
words = ["补偿"]

[[step.choice]]
value = "exchange"
words = ["换货"]

[[end]]
id = "recorded"
say = "已为您登记。"
say_en = "Recorded."
handoff = true
"#;
        crate::dialog::parse_str(std::path::Path::new("damaged_item.toml"), text).unwrap()
    }

    #[test]
    fn summary_names_reason_flow_order_and_remedy_in_words_and_quotes_the_buyer() {
        let mut collected = BTreeMap::new();
        collected.insert("order".to_string(), "2345678901234567".to_string());
        collected.insert("remedy".to_string(), "exchange".to_string());
        let flow = damaged_item();
        let line = summary(Reason::FlowDecision, "杯子碎了", Some(&flow), &collected);
        assert_eq!(
            line,
            "[售后待处理] · 商品破损 · 订单 2345678901234567 · 希望 换货 · “杯子碎了”"
        );
    }

    #[test]
    fn long_messages_are_cut_in_the_summary() {
        let message = "很".repeat(100);
        let line = summary(Reason::TooLong, &message, None, &BTreeMap::new());
        assert!(line.chars().count() < 60, "{line}");
        assert!(line.ends_with("…”"));
    }

    #[test]
    fn complaints_come_before_other_handoffs() {
        assert!(Reason::Complaint.priority() < Reason::LowConfidence.priority());
        assert!(Reason::Angry.priority() < Reason::FlowDecision.priority());
    }
}
