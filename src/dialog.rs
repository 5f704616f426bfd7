//! After-sales dialog flows from `dialogs/` (one TOML file per flow): the steps, what each
//! collects, how a buyer's answer is checked, and how a flow ends. `load_dir` is the only
//! function here that reads files; `advance` is pure.
//!
//! A flow never decides a remedy itself: it records the case and, where the rulebooks need a
//! person (compensation, reship, refund), ends in a handoff with the case attached.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::knowledge::{self, Diagnostic, EntryId, KnowledgeBase, Location, Template};
use crate::normalize::{contains_phrase, ordinal, Normalizer};
use crate::phrasing;

/// Flows the rulebooks require (POLICIES.md §3, issue 5).
pub const REQUIRED_FLOWS: &[&str] = &[
    "damaged_item",
    "missing_item",
    "wrong_item",
    "quality_issue",
    "not_as_described",
    "late_delivery",
    "complaint",
    "change_address",
    "cancel_order",
];

/// Answers a step refuses before the bot hands the chat to a person instead of asking again.
pub const MAX_REASKS: u32 = 2;

/// Digits in an order number (Taobao's are 16–19; shorter ones come from other platforms).
const ORDER_DIGITS: std::ops::RangeInclusive<usize> = 8..=24;

/// A flow id (`damaged_item`): lower-case ASCII, digits and `_`, like an entry id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlowId(String);

impl FlowId {
    pub fn parse(text: &str) -> Option<FlowId> {
        EntryId::parse(text).map(|id| FlowId(id.as_str().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a case is charged to in the weekly review (POLICIES.md §3: 我方/快递/买家).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    /// 我方: the shop (packing, wrong or missing items, quality).
    Shop,
    /// 快递: the courier (damage or delay in transit).
    Courier,
    /// 买家: the buyer (a change of mind, a wrong address).
    Buyer,
    /// 待定: a person decides after checking.
    Undetermined,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Shop => "shop",
            Party::Courier => "courier",
            Party::Buyer => "buyer",
            Party::Undetermined => "undetermined",
        }
    }

    pub fn parse(text: &str) -> Option<Party> {
        match text {
            "shop" | "我方" => Some(Party::Shop),
            "courier" | "快递" => Some(Party::Courier),
            "buyer" | "买家" => Some(Party::Buyer),
            "undetermined" | "待定" => Some(Party::Undetermined),
            _ => None,
        }
    }
}

/// What a step asks the buyer for, and how an answer is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Collect {
    /// An order number: a run of digits, spaces and dashes between groups allowed.
    OrderNumber,
    /// A photo or document sent through the channel.
    Photo,
    /// Free text of at least this many characters.
    Text { min_chars: usize },
    /// One of a few options, by number, by name or by one of its words.
    Choice(Vec<Choice>),
}

/// One option of a choice step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    /// What is recorded (`exchange`, `return`, `not_shipped` …).
    pub value: String,
    /// Words that pick this option besides its number.
    pub words: Vec<String>,
    /// Where the flow goes when it is picked (default: the step's `next`).
    #[serde(default)]
    pub next: Option<String>,
}

/// One question of a flow.
#[derive(Debug, Clone)]
pub struct Step {
    /// Also the name under which the answer is recorded (`order`, `photos`, `remedy` …).
    pub id: String,
    /// What the step collects, as an agent reads it among the collected facts.
    pub label: Template,
    pub prompt: Template,
    /// Asked again, politely, when the answer does not fit.
    pub reask: Template,
    pub collect: Collect,
    /// Words that skip an optional step ("没有"): empty for a required one.
    pub skip: Vec<String>,
    pub next: Option<String>,
    pub line: usize,
}

impl Step {
    /// The label of option `value` of a choice step, in Chinese and English, as its prompts
    /// number it (`2. 换货`): what the buyer picked, in words. None for another kind of step
    /// or a value it does not offer (`validate` makes the prompts list every option).
    pub fn option_label(&self, value: &str) -> Option<Template> {
        let Collect::Choice(choices) = &self.collect else {
            return None;
        };
        let index = choices.iter().position(|c| c.value == value)?;
        Some(Template {
            zh: numbered_options(&self.prompt.zh).get(index)?.clone(),
            en: numbered_options(&self.prompt.en).get(index)?.clone(),
        })
    }
}

/// How a flow ends.
#[derive(Debug, Clone)]
pub struct End {
    pub id: String,
    /// The last message of the flow.
    pub say: Template,
    /// A person must decide (compensation, reship, refund): the case goes to the queue.
    pub handoff: bool,
    /// Overrides the flow's responsible party for this ending.
    pub responsible: Option<Party>,
    pub line: usize,
}

/// One after-sales procedure.
#[derive(Debug, Clone)]
pub struct Flow {
    pub id: FlowId,
    pub title: String,
    pub title_en: String,
    /// The POLICIES.md / seed rule it implements.
    pub source: String,
    /// Knowledge entries whose match starts this flow.
    pub starts: Vec<EntryId>,
    /// Who the case is charged to unless an ending says otherwise.
    pub responsible: Party,
    /// Hand off as the flow starts (complaints: serious ones are handled first) and collect
    /// the details while the buyer waits for a person.
    pub handoff_first: bool,
    pub steps: Vec<Step>,
    pub ends: Vec<End>,
    pub location: Location,
}

impl Flow {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn end(&self, id: &str) -> Option<&End> {
        self.ends.iter().find(|e| e.id == id)
    }

    pub fn first(&self) -> &Step {
        // `validate` refuses a flow without steps.
        &self.steps[0]
    }
}

/// Every flow under `dialogs/`.
#[derive(Debug, Clone, Default)]
pub struct Flows {
    pub flows: Vec<Flow>,
}

impl Flows {
    pub fn get(&self, id: &FlowId) -> Option<&Flow> {
        self.flows.iter().find(|f| &f.id == id)
    }

    /// The flow a matched entry starts, if any.
    pub fn started_by(&self, entry: &EntryId) -> Option<&Flow> {
        self.flows.iter().find(|f| f.starts.contains(entry))
    }
}

/// A photo or document the buyer sent (a channel's file id, or a URL over HTTP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// `photo` or `document`.
    pub kind: String,
    pub id: String,
}

/// Where a buyer is inside a flow; stored with the chat so a restart resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub flow: FlowId,
    pub step: String,
    /// Answers so far, by step id.
    pub collected: BTreeMap<String, String>,
    /// Photos and documents sent during the flow.
    pub evidence: Vec<Attachment>,
    /// Answers the current step refused.
    pub misses: u32,
}

impl Progress {
    pub fn start(flow: &Flow) -> Progress {
        Progress {
            flow: flow.id.clone(),
            step: flow.first().id.clone(),
            collected: BTreeMap::new(),
            evidence: Vec::new(),
            misses: 0,
        }
    }
}

/// A buyer's message as a flow sees it.
pub struct Answer<'a> {
    /// As typed (order numbers are read from it).
    pub text: &'a str,
    /// Through the shared normaliser (choices are matched on it).
    pub normalized: &'a str,
    pub attachments: &'a [Attachment],
}

/// What follows an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// The answer fit; ask the next step.
    Ask(Progress),
    /// The answer did not fit; ask again (`misses` counts the refusals).
    Reask(Progress),
    /// The flow is over with this ending.
    Done { progress: Progress, end: String },
}

/// Takes one answer to the current step. Photos sent at any step are kept as evidence.
pub fn advance(
    flow: &Flow,
    progress: &Progress,
    answer: &Answer,
    normalizer: &Normalizer,
) -> Advance {
    let mut progress = progress.clone();
    progress.evidence.extend(answer.attachments.iter().cloned());
    let Some(step) = flow.step(&progress.step) else {
        // A step removed by an edit while a buyer was inside it: finish with what we have.
        return Advance::Done {
            end: flow.ends[0].id.clone(),
            progress,
        };
    };
    let skipped = step
        .skip
        .iter()
        .any(|word| normalizer.normalize(word) == answer.normalized);
    let accepted = if skipped {
        Some(("-".to_string(), None))
    } else {
        accept(step, answer, normalizer)
    };
    let Some((value, branch)) = accepted else {
        progress.misses += 1;
        return Advance::Reask(progress);
    };
    progress.collected.insert(step.id.clone(), value);
    progress.misses = 0;
    let next = branch.or_else(|| step.next.clone()).unwrap_or_default();
    if flow.step(&next).is_some() {
        progress.step = next;
        Advance::Ask(progress)
    } else {
        Advance::Done {
            progress,
            end: next,
        }
    }
}

/// The value an answer gives the step, and the branch it picks; None when it does not fit.
fn accept(
    step: &Step,
    answer: &Answer,
    normalizer: &Normalizer,
) -> Option<(String, Option<String>)> {
    match &step.collect {
        Collect::OrderNumber => order_number(answer.text).map(|n| (n, None)),
        Collect::Photo => {
            let count = answer.attachments.len();
            (count > 0).then(|| (format!("{count}"), None))
        }
        Collect::Text { min_chars } => {
            let text = answer.text.trim();
            (answer.normalized.chars().count() >= *min_chars).then(|| (text.to_string(), None))
        }
        Collect::Choice(choices) => {
            let picked = match ordinal(answer.normalized) {
                Some(index) => choices.get(index),
                None => {
                    // The option whose matched word is longest wins ("not shipped" over
                    // "shipped"); two options named alike ("换货还是退货") is a question.
                    let longest = |choice: &Choice| {
                        choice
                            .words
                            .iter()
                            .map(|w| normalizer.normalize(w))
                            .filter(|w| !w.is_empty() && contains_phrase(answer.normalized, w))
                            .map(|w| w.chars().count())
                            .max()
                    };
                    let scored: Vec<(usize, &Choice)> = choices
                        .iter()
                        .filter_map(|c| longest(c).map(|n| (n, c)))
                        .collect();
                    let best = scored.iter().map(|(n, _)| *n).max()?;
                    let winners: Vec<&Choice> = scored
                        .iter()
                        .filter(|(n, _)| *n == best)
                        .map(|(_, c)| *c)
                        .collect();
                    (winners.len() == 1).then(|| winners[0])
                }
            }?;
            Some((picked.value.clone(), picked.next.clone()))
        }
    }
}

/// The first run of 8–24 digits in a text, allowing spaces or dashes between digit groups
/// ("订单号 2345 6789 0123 4567" → "2345678901234567"). Full-width digits count.
pub fn order_number(text: &str) -> Option<String> {
    let mut digits = String::new();
    let mut pending_gap = false;
    for c in text.chars() {
        let c = match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            _ => c,
        };
        if c.is_ascii_digit() {
            digits.push(c);
            pending_gap = false;
        } else if (c == ' ' || c == '-') && !digits.is_empty() && !pending_gap {
            pending_gap = true;
        } else {
            if ORDER_DIGITS.contains(&digits.len()) {
                return Some(digits);
            }
            digits.clear();
            pending_gap = false;
        }
    }
    ORDER_DIGITS.contains(&digits.len()).then_some(digits)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    id: String,
    title: String,
    title_en: String,
    source: String,
    starts: Vec<String>,
    responsible: Party,
    #[serde(default)]
    handoff_first: bool,
    step: Vec<RawStep>,
    end: Vec<RawEnd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: toml::Spanned<String>,
    label: String,
    label_en: String,
    collect: String,
    prompt: String,
    prompt_en: String,
    reask: String,
    reask_en: String,
    #[serde(default)]
    min_chars: Option<usize>,
    #[serde(default)]
    choice: Vec<Choice>,
    #[serde(default)]
    skip: Vec<String>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    id: toml::Spanned<String>,
    say: String,
    say_en: String,
    #[serde(default)]
    handoff: bool,
    #[serde(default)]
    responsible: Option<Party>,
}

/// Reads every `*.toml` in `dir` as a flow and validates the set against the knowledge base.
pub fn load_dir(dir: &Path, knowledge_base: &KnowledgeBase) -> (Flows, Vec<Diagnostic>) {
    let mut flows = Flows::default();
    let mut diagnostics = Vec::new();
    let paths = match knowledge::toml_files(dir) {
        Ok(paths) => paths,
        Err(error) => {
            diagnostics.push(knowledge::at(
                dir,
                0,
                format!("cannot read the folder: {error}"),
            ));
            return (flows, diagnostics);
        }
    };
    for path in paths {
        let parsed = knowledge::read_text(&path)
            .map_err(|message| knowledge::at(&path, 0, message))
            .and_then(|text| parse_str(&path, &text));
        match parsed {
            Ok(flow) => flows.flows.push(flow),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    diagnostics.extend(validate(&flows, knowledge_base, dir));
    (flows, diagnostics)
}

/// Parses one flow file; schema errors come back at their line.
pub fn parse_str(path: &Path, text: &str) -> Result<Flow, Diagnostic> {
    let raw: RawFlow = knowledge::parse_toml(path, text)?;
    let location = |line| Location {
        file: path.to_path_buf(),
        line,
    };
    let mut steps = Vec::new();
    for step in raw.step {
        let line = knowledge::line_of(text, step.id.span().start);
        let collect = match step.collect.as_str() {
            "order_number" => Collect::OrderNumber,
            "photo" => Collect::Photo,
            "text" => Collect::Text {
                min_chars: step.min_chars.unwrap_or(2),
            },
            "choice" => Collect::Choice(step.choice),
            other => {
                return Err(knowledge::at(
                    path,
                    line,
                    format!("step \"{}\": collect = \"{other}\" is not one of order_number, photo, text, choice", step.id.get_ref()),
                ))
            }
        };
        steps.push(Step {
            id: step.id.into_inner(),
            label: Template {
                zh: step.label,
                en: step.label_en,
            },
            prompt: Template {
                zh: step.prompt,
                en: step.prompt_en,
            },
            reask: Template {
                zh: step.reask,
                en: step.reask_en,
            },
            collect,
            skip: step.skip,
            next: step.next,
            line,
        });
    }
    let ends = raw
        .end
        .into_iter()
        .map(|end| End {
            line: knowledge::line_of(text, end.id.span().start),
            id: end.id.into_inner(),
            say: Template {
                zh: end.say,
                en: end.say_en,
            },
            handoff: end.handoff,
            responsible: end.responsible,
        })
        .collect();
    let id = FlowId::parse(&raw.id).ok_or_else(|| {
        knowledge::at(
            path,
            1,
            format!(
                "flow id \"{}\" must be lower-case letters, digits and _",
                raw.id
            ),
        )
    })?;
    Ok(Flow {
        id,
        title: raw.title,
        title_en: raw.title_en,
        source: raw.source,
        starts: raw
            .starts
            .iter()
            .map(|s| {
                EntryId::parse(s).unwrap_or_else(|| EntryId::parse("invalid_id").expect("valid"))
            })
            .collect(),
        responsible: raw.responsible,
        handoff_first: raw.handoff_first,
        steps,
        ends,
        location: location(1),
    })
}

/// Cross-checks: ids, references to entries and steps, apologies, phrasing, required flows.
pub fn validate(flows: &Flows, knowledge_base: &KnowledgeBase, dir: &Path) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut seen_ids = BTreeSet::new();
    let mut started: BTreeMap<&EntryId, &FlowId> = BTreeMap::new();
    for flow in &flows.flows {
        let at = |line: usize, message: String| knowledge::at(&flow.location.file, line, message);
        if !seen_ids.insert(&flow.id) {
            diagnostics.push(at(1, format!("flow \"{}\" is defined twice", flow.id)));
        }
        if flow.starts.is_empty() {
            diagnostics.push(at(
                1,
                format!(
                    "flow \"{}\" has no `starts` entry, so nothing starts it",
                    flow.id
                ),
            ));
        }
        for entry in &flow.starts {
            match knowledge_base.entry(entry.as_str()) {
                None => diagnostics.push(at(1, format!("flow \"{}\" starts from entry \"{entry}\", which is not in the knowledge base", flow.id))),
                Some(_) => {
                    if let Some(other) = started.insert(entry, &flow.id) {
                        diagnostics.push(at(1, format!("entry \"{entry}\" starts both flow \"{other}\" and flow \"{}\"", flow.id)));
                    }
                }
            }
        }
        if flow.steps.is_empty() || flow.ends.is_empty() {
            diagnostics.push(at(
                1,
                format!(
                    "flow \"{}\" needs at least one [[step]] and one [[end]]",
                    flow.id
                ),
            ));
            continue;
        }
        let first = &flow.first().prompt;
        if !apologises(&first.zh) || !apologises(&first.en) {
            diagnostics.push(at(flow.first().line, format!("flow \"{}\": the first prompt must start with an apology (POLICIES.md §3), e.g. 非常抱歉 / We are sorry", flow.id)));
        }
        let mut names = BTreeSet::new();
        for step in &flow.steps {
            if !names.insert(step.id.as_str()) {
                diagnostics.push(at(
                    step.line,
                    format!("step \"{}\" is defined twice", step.id),
                ));
            }
            let mut targets: Vec<&String> = step.next.iter().collect();
            if let Collect::Choice(choices) = &step.collect {
                if choices.len() < 2 {
                    diagnostics.push(at(
                        step.line,
                        format!(
                            "step \"{}\" is a choice with fewer than two [[step.choice]] options",
                            step.id
                        ),
                    ));
                }
                for (field, prompt) in [("prompt", &step.prompt.zh), ("prompt_en", &step.prompt.en)]
                {
                    let listed = numbered_options(prompt).len();
                    if listed != choices.len() {
                        diagnostics.push(at(step.line, format!("step \"{}\": {field} lists {listed} numbered options (\"1. …\" lines, shown as buttons) for {} [[step.choice]]", step.id, choices.len())));
                    }
                }
                for choice in choices {
                    if choice.words.is_empty() {
                        diagnostics.push(at(
                            step.line,
                            format!(
                                "step \"{}\": option \"{}\" has no words",
                                step.id, choice.value
                            ),
                        ));
                    }
                    match &choice.next {
                        Some(next) => targets.push(next),
                        None if step.next.is_none() => diagnostics.push(at(step.line, format!("step \"{}\": option \"{}\" has no `next` and the step has none either", step.id, choice.value))),
                        None => {}
                    }
                }
            } else if step.next.is_none() {
                diagnostics.push(at(
                    step.line,
                    format!("step \"{}\" has no `next` step or end", step.id),
                ));
            }
            for target in targets {
                if flow.step(target).is_none() && flow.end(target).is_none() {
                    diagnostics.push(at(step.line, format!("step \"{}\" goes to \"{target}\", which is neither a step nor an end of this flow", step.id)));
                }
            }
            for (field, text, whole) in [
                ("prompt", &step.prompt.zh, true),
                ("prompt_en", &step.prompt.en, true),
                ("reask", &step.reask.zh, true),
                ("reask_en", &step.reask.en, true),
            ] {
                for violation in check(knowledge_base, text, whole) {
                    diagnostics.push(at(
                        step.line,
                        format!("step \"{}\" {field}: {violation}", step.id),
                    ));
                }
            }
        }
        for end in &flow.ends {
            if !names.insert(end.id.as_str()) {
                diagnostics.push(at(
                    end.line,
                    format!(
                        "\"{}\" is both a step and an end, or an end defined twice",
                        end.id
                    ),
                ));
            }
            for (field, text) in [("say", &end.say.zh), ("say_en", &end.say.en)] {
                for violation in check(knowledge_base, text, true) {
                    diagnostics.push(at(
                        end.line,
                        format!("end \"{}\" {field}: {violation}", end.id),
                    ));
                }
            }
        }
    }
    for entry in &knowledge_base.entries {
        if entry.action == knowledge::Action::Dialog && !started.contains_key(&entry.id) {
            diagnostics.push(knowledge::at(
                &entry.location.file,
                entry.location.line,
                format!(
                    "entry \"{}\" is a dialog entry but no flow in {} starts from it",
                    entry.id,
                    dir.display()
                ),
            ));
        }
    }
    for required in REQUIRED_FLOWS {
        if !flows.flows.iter().any(|f| f.id.as_str() == *required) {
            diagnostics.push(knowledge::at(
                dir,
                0,
                format!("required flow \"{required}\" is missing"),
            ));
        }
    }
    diagnostics
}

fn check(knowledge_base: &KnowledgeBase, text: &str, whole: bool) -> Vec<phrasing::Violation> {
    if whole {
        phrasing::check(&knowledge_base.phrasing, text)
    } else {
        phrasing::check_fragment(&knowledge_base.phrasing, text)
    }
}

fn apologises(text: &str) -> bool {
    let head: String = text.chars().take(40).collect::<String>().to_lowercase();
    [
        "抱歉",
        "对不起",
        "sorry",
        "apolog",
        "理解您的心情",
        "understand how",
    ]
    .iter()
    .any(|word| head.contains(word))
}

/// The `1. label` lines of a text, numbered 1, 2, 3 … in order; none when the numbering is
/// off. A choice step's prompt lists its options so; channels show them as buttons.
pub fn numbered_options(text: &str) -> Vec<String> {
    let mut options = Vec::new();
    for line in text.lines() {
        let expected = format!("{}.", options.len() + 1);
        if let Some(label) = line.trim().strip_prefix(&expected) {
            let label = label.trim();
            if !label.is_empty() {
                options.push(label.to_string());
                continue;
            }
        }
        if line
            .trim()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
        {
            return Vec::new();
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_lines_are_options() {
        assert_eq!(
            numbered_options(
                "请问您希望怎么处理？请回复序号：\n1. 补偿部分货款\n2. 换一件新的\n3. 退货退款"
            ),
            ["补偿部分货款", "换一件新的", "退货退款"]
        );
        assert!(numbered_options("请您回复序号 1、2 或 3。").is_empty());
        assert!(numbered_options("1. 补偿\n3. 退货").is_empty());
    }

    #[track_caller]
    fn check_order(text: &str, expect: Option<&str>) {
        assert_eq!(order_number(text).as_deref(), expect, "{text}");
    }

    #[test]
    fn order_numbers_are_read_from_what_buyers_type() {
        check_order("订单号是 2345678901234567", Some("2345678901234567"));
        check_order("2345 6789 0123 4567", Some("2345678901234567"));
        check_order("１２３４５６７８９０１２", Some("123456789012"));
        check_order("order 1234-5678-9012 thanks", Some("123456789012"));
        check_order("我买了2个杯子", None);
        check_order("订单号我找不到", None);
        check_order("1234567", None);
    }
}
