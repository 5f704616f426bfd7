//! A buyer's conversation: the chat's state (with the bot, inside a flow, waiting for a person,
//! with a person), what it remembers between messages, and `handle`, which turns one inbound
//! message into an `Outcome` (replies, next state, a case, a handoff). Pure: the caller loads
//! the conversation, passes the moment, and stores the outcome in one transaction.
//!
//! Every reply comes from `knowledge/` or `dialogs/` and passes the phrasing check here, the
//! last place before a channel sends it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bot::Bot;
use crate::case::{CaseStatus, NewCase};
use crate::dialog::{self, Advance, Attachment, Collect, Flow, Progress, Step};
use crate::engine::{Considered, Context, Decision, Reply};
use crate::handoff::{NewHandoff, Reason};
use crate::hours::ServiceHours;
use crate::knowledge::Action;
use crate::normalize::{contains_phrase, reply_lang, Lang};
use crate::{phrasing, reply};

/// Longest chat id a channel may use.
pub const MAX_CHAT_ID_CHARS: usize = 128;
/// Fewest characters of an HTTP chat id: 22 URL-safe characters carry 132 bits, more than
/// anyone can guess.
pub const MIN_SECRET_CHAT_ID_CHARS: usize = 22;
/// The channel of the HTTP chat API.
pub const HTTP_CHANNEL: &str = "http";
/// Messages this close (normalised edit similarity) to the previous one count as a repeat.
const REPEAT_SIMILARITY: f64 = 0.75;
/// A buyer waiting for a person is acknowledged at most this often.
const ACK_EVERY_MS: i64 = 60_000;
/// Confidence above which a question inside a flow is taken as a new topic, not an answer
/// (answers given at 0.8 and above are right 0.99 of the time on the held-out splits).
const LEAVE_FLOW_CONFIDENCE: f32 = 0.85;

/// A chat on a channel: `http:abc123`, `telegram:42`. Ids from different channels never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChatKey {
    channel: String,
    id: String,
}

impl ChatKey {
    /// Refuses an empty or over-long id, control characters, and channels that are not
    /// lower-case words.
    pub fn parse(channel: &str, id: &str) -> Option<ChatKey> {
        let channel_ok = !channel.is_empty() && channel.bytes().all(|b| b.is_ascii_lowercase());
        let id_ok = !id.trim().is_empty()
            && id.chars().count() <= MAX_CHAT_ID_CHARS
            && !id.chars().any(char::is_control);
        (channel_ok && id_ok).then(|| ChatKey {
            channel: channel.to_string(),
            id: id.to_string(),
        })
    }

    /// A chat of the HTTP API. Its id is the buyer's secret and the only way to the chat, so
    /// it must be too long to guess: 22–128 URL-safe characters (A–Z a–z 0–9 - _). The key's
    /// channel is always `http`: no id given to the HTTP API reaches another channel's chat.
    pub fn parse_http(id: &str) -> Option<ChatKey> {
        let strong = (MIN_SECRET_CHAT_ID_CHARS..=MAX_CHAT_ID_CHARS).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        strong.then(|| ChatKey {
            channel: HTTP_CHANNEL.to_string(),
            id: id.to_string(),
        })
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for ChatKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.id)
    }
}

/// Who the chat is with.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ChatState {
    #[default]
    Bot,
    /// Inside an after-sales flow.
    Flow { progress: Progress },
    /// Handed off, nobody has claimed it yet. A complaint flow keeps collecting meanwhile.
    Waiting { flow: Option<Progress> },
    /// An agent holds the chat; the bot only stores the buyer's messages.
    Agent { agent: String },
    /// The agent closed the chat and asked for a 1–5 rating; the next message may be one.
    Rating { handoff: i64, agent: String },
}

impl ChatState {
    /// `bot`, `flow`, `waiting` or `agent`, as the API reports it.
    pub fn name(&self) -> &'static str {
        match self {
            ChatState::Bot => "bot",
            ChatState::Flow { .. } => "flow",
            ChatState::Waiting { .. } => "waiting",
            ChatState::Agent { .. } => "agent",
            ChatState::Rating { .. } => "bot",
        }
    }
}

/// What the bot remembers between messages.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// The last product named, and the last clarify question's choices.
    pub context: Context,
    /// The buyer's language, kept for messages without words ("2", a photo).
    pub lang: Lang,
    /// The topic of the last answer.
    pub last_topic: Option<String>,
    /// The last question, normalised (for follow-ups and repeats).
    pub last_question: Option<String>,
    /// The last question the bot could not answer (it asked which topic was meant).
    pub unanswered: Option<String>,
    /// When a waiting buyer was last acknowledged.
    pub last_ack_ms: Option<i64>,
}

/// A chat's state and memory, as stored.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Conversation {
    pub state: ChatState,
    #[serde(default)]
    pub memory: Memory,
}

/// One message from a buyer.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// What the bot did with a message, as stored and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    Answer,
    Clarify,
    /// Asked a flow's question or ended a flow.
    Dialog,
    Handoff,
    /// Stored for the person who has or will take the chat; at most acknowledged.
    Hold,
}

impl Act {
    pub fn as_str(self) -> &'static str {
        match self {
            Act::Answer => "answer",
            Act::Clarify => "clarify",
            Act::Dialog => "dialog",
            Act::Handoff => "handoff",
            Act::Hold => "hold",
        }
    }
}

/// Why the bot replied as it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    pub act: Act,
    pub topic: Option<String>,
    pub confidence: f32,
    pub candidates: Vec<Considered>,
}

/// Everything one message changes; stored in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Texts to send, in order (possibly none while an agent has the chat).
    pub replies: Vec<String>,
    /// What the last of `replies` offers to pick by number, in order: a clarify's topic
    /// titles, or a flow step's options. A channel may show them as buttons that answer with
    /// the number.
    pub choices: Vec<String>,
    pub conversation: Conversation,
    pub trace: Trace,
    /// A case to record (attached to `handoff`, or to the open handoff, when there is one).
    pub case: Option<NewCase>,
    pub handoff: Option<NewHandoff>,
    /// Details a flow collected while the buyer waits, for the open handoff.
    pub handoff_details: Option<(BTreeMap<String, String>, Vec<Attachment>)>,
    /// The buyer left the queue.
    pub cancel_handoff: bool,
    /// The buyer rated the agent who closed the chat.
    pub rating: Option<Rating>,
}

/// A buyer's 1–5 rating of a closed chat (40% of an agent's score in the rulebooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    pub handoff: i64,
    pub agent: String,
    pub score: u8,
}

/// Handles one buyer message. `hours` decides whether a handoff tells the buyer when agents
/// are back.
pub fn handle(
    bot: &Bot,
    hours: &ServiceHours,
    conversation: &Conversation,
    inbound: &Inbound,
) -> Outcome {
    let mut turn = Turn::new(bot, hours, conversation, inbound);
    match conversation.state.clone() {
        ChatState::Agent { .. } => turn.hold(false),
        ChatState::Rating { handoff, agent } => turn.rating(handoff, agent),
        ChatState::Waiting { flow } => turn.waiting(flow),
        ChatState::Flow { progress } => turn.in_flow(progress),
        ChatState::Bot => turn.with_bot(),
    }
    turn.finish()
}

/// The work on one message.
struct Turn<'a> {
    bot: &'a Bot,
    hours: &'a ServiceHours,
    inbound: &'a Inbound,
    normalized: String,
    lang: Lang,
    outcome: Outcome,
}

impl<'a> Turn<'a> {
    fn new(
        bot: &'a Bot,
        hours: &'a ServiceHours,
        conversation: &Conversation,
        inbound: &'a Inbound,
    ) -> Turn<'a> {
        let normalized = bot.engine.normalizer().normalize(&inbound.text);
        let lang = reply_lang(&inbound.text, conversation.memory.lang);
        let mut next = conversation.clone();
        next.memory.lang = lang;
        Turn {
            bot,
            hours,
            inbound,
            normalized,
            lang,
            outcome: Outcome {
                replies: Vec::new(),
                choices: Vec::new(),
                conversation: next,
                trace: Trace {
                    act: Act::Hold,
                    topic: None,
                    confidence: 0.0,
                    candidates: Vec::new(),
                },
                case: None,
                handoff: None,
                handoff_details: None,
                cancel_handoff: false,
                rating: None,
            },
        }
    }

    fn memory(&mut self) -> &mut Memory {
        &mut self.outcome.conversation.memory
    }

    fn set_state(&mut self, state: ChatState) {
        self.outcome.conversation.state = state;
    }

    fn say(&mut self, text: String) {
        self.outcome.replies.push(text);
    }

    fn template(&self, name: &str, slots: &[(&str, String)]) -> String {
        reply::template(self.bot.engine.knowledge_base(), name, self.lang, slots)
    }

    fn pick(&self, template: &crate::knowledge::Template) -> String {
        reply::pick(&template.zh, &template.en, self.lang).to_string()
    }

    fn trace(
        &mut self,
        act: Act,
        topic: Option<String>,
        confidence: f32,
        candidates: Vec<Considered>,
    ) {
        self.outcome.trace = Trace {
            act,
            topic,
            confidence,
            candidates,
        };
    }

    /// The buyer's words end a flow or the wait ("算了", "never mind").
    fn leaves(&self) -> bool {
        let lexicon = &self.bot.engine.knowledge_base().lexicon;
        !self.normalized.is_empty()
            && lexicon
                .leave
                .iter()
                .any(|w| self.bot.engine.normalizer().normalize(w) == self.normalized)
    }

    fn angry(&self) -> bool {
        let text = &self.inbound.text;
        let bangs = text.chars().filter(|&c| c == '!' || c == '！').count() >= 3;
        let letters: Vec<char> = text.chars().filter(char::is_ascii_alphabetic).collect();
        let upper = letters.iter().filter(|c| c.is_ascii_uppercase()).count();
        let shouting = letters.len() >= 8 && upper * 10 >= letters.len() * 8;
        let normalizer = self.bot.engine.normalizer();
        let insult = self
            .bot
            .engine
            .knowledge_base()
            .lexicon
            .anger
            .iter()
            .any(|word| {
                let word = normalizer.normalize(word);
                !word.is_empty() && contains_phrase(&self.normalized, &word)
            });
        bangs || shouting || insult
    }

    /// A message with no words and only files, outside a flow.
    fn only_attachments(&self) -> bool {
        self.normalized.is_empty() && !self.inbound.attachments.is_empty()
    }

    // ---- after an agent closed the chat -------------------------------------------------

    /// A score 1–5 is the buyer's rating; anything else is a new question for the bot.
    fn rating(&mut self, handoff: i64, agent: String) {
        self.set_state(ChatState::Bot);
        let Some(score) = score(&self.normalized) else {
            return self.with_bot();
        };
        self.outcome.rating = Some(Rating {
            handoff,
            agent,
            score,
        });
        let text = self.template("rating_thanks", &[]);
        self.say(text);
        self.trace(Act::Answer, None, 1.0, Vec::new());
    }

    // ---- with the bot ------------------------------------------------------------------

    fn with_bot(&mut self) {
        if self.only_attachments() {
            let text = self.template("attachment_received", &[]);
            self.say(text);
            self.trace(Act::Answer, None, 0.0, Vec::new());
            return;
        }
        if self.angry() {
            let message = self.inbound.text.clone();
            let candidates = self.bot.engine.ask(&message).candidates;
            self.hand_off(
                NewHandoff::new(Reason::Angry, &message, candidates.clone()),
                "angry",
                None,
            );
            self.trace(Act::Handoff, None, 0.0, candidates);
            return;
        }
        let mut context = self.outcome.conversation.memory.context.clone();
        let mut reply = self.bot.engine.respond(&self.inbound.text, &mut context);
        // Judged on the message as it stands: saying again what the bot asked about is a
        // repeat even if the words alone could be guessed at.
        let repeated = self.repeats_last_question(&reply);
        if !repeated && reply.action != Decision::Answer && reply.action != Decision::Dialog {
            if let Some(better) = self.follow_up(&context) {
                reply = better.0;
                context = better.1;
            }
        }
        self.memory().context = context;
        if repeated {
            let message = self.inbound.text.clone();
            let candidates = reply.candidates.clone();
            self.hand_off(
                NewHandoff::new(Reason::Repeated, &message, candidates.clone()),
                "repeated",
                None,
            );
            self.trace(
                Act::Handoff,
                reply.topic.map(|t| t.to_string()),
                reply.confidence,
                candidates,
            );
            return;
        }
        let normalized = self.normalized.clone();
        self.memory().last_question = Some(normalized.clone());
        self.memory().unanswered = None;
        let topic = reply.topic.as_ref().map(ToString::to_string);
        let flow = reply
            .topic
            .as_ref()
            .and_then(|t| self.bot.flows.started_by(t));
        if let Some(flow) = flow {
            self.memory().last_topic = topic.clone();
            self.start_flow(flow, &reply);
            return;
        }
        match reply.action {
            Decision::Answer => {
                self.memory().last_topic = topic.clone();
                self.say(reply.reply);
                self.trace(Act::Answer, topic, reply.confidence, reply.candidates);
            }
            Decision::Clarify => {
                self.memory().unanswered = Some(normalized);
                self.outcome.choices = self.choice_titles(&reply.choices);
                self.say(reply.reply);
                self.trace(Act::Clarify, None, reply.confidence, reply.candidates);
            }
            Decision::Dialog | Decision::Handoff => {
                let reason = match topic.as_deref() {
                    Some("human") => Reason::AskedForPerson,
                    Some("complaint") => Reason::Complaint,
                    _ if crate::engine::too_long_to_read(&self.inbound.text) => Reason::TooLong,
                    _ => Reason::LowConfidence,
                };
                let message = self.inbound.text.clone();
                let mut handoff = NewHandoff::new(reason, &message, reply.candidates.clone());
                handoff.summary = crate::handoff::summary(reason, &message, None, &BTreeMap::new());
                self.hand_off_with_text(handoff, reply.reply);
                self.trace(Act::Handoff, topic, reply.confidence, reply.candidates);
            }
        }
    }

    /// The titles of a clarify's choices in the buyer's language, as the reply numbers them.
    fn choice_titles(&self, choices: &[crate::knowledge::EntryId]) -> Vec<String> {
        let knowledge_base = self.bot.engine.knowledge_base();
        choices
            .iter()
            .filter_map(|id| knowledge_base.entry(id.as_str()))
            .map(|entry| reply::pick(&entry.title, &entry.title_en, self.lang).to_string())
            .collect()
    }

    /// "那退货呢" after a question about exchanges: without its marker the message may be
    /// clear on its own; otherwise read it together with the previous question.
    fn follow_up(&self, context: &Context) -> Option<(Reply, Context)> {
        // A first message has nothing to follow up on.
        let last = self.outcome.conversation.memory.last_question.as_ref()?;
        let stripped = strip_follow_up_marker(&self.inbound.text)?;
        let engine = &self.bot.engine;
        let attempts = [stripped.clone(), format!("{last} {stripped}")];
        attempts.into_iter().find_map(|text| {
            let mut context = context.clone();
            let reply = engine.respond(&text, &mut context);
            (reply.action == Decision::Answer).then_some((reply, context))
        })
    }

    /// The buyer says again what the bot could not answer, or repeats a question it just
    /// answered (the answer did not help).
    fn repeats_last_question(&self, reply: &Reply) -> bool {
        let memory = &self.outcome.conversation.memory;
        let similar = |previous: &Option<String>| {
            previous.as_deref().is_some_and(|p| {
                !p.is_empty()
                    && strsim::normalized_levenshtein(p, &self.normalized) >= REPEAT_SIMILARITY
            })
        };
        let unanswered_again = reply.action == Decision::Clarify && similar(&memory.unanswered);
        let answered_again = reply.action == Decision::Answer
            && reply.topic.as_ref().map(ToString::to_string) == memory.last_topic
            && similar(&memory.last_question)
            && self.normalized.chars().count() > 2;
        unanswered_again || answered_again
    }

    // ---- flows -------------------------------------------------------------------------

    fn start_flow(&mut self, flow: &Flow, reply: &Reply) {
        let progress = Progress::start(flow);
        let prompt = self.pick(&flow.first().prompt);
        let topic = Some(flow.id.to_string());
        if flow.handoff_first {
            let message = self.inbound.text.clone();
            let reason = if flow.id.as_str() == "complaint" {
                Reason::Complaint
            } else {
                Reason::FlowDecision
            };
            let handoff =
                NewHandoff::from_flow(reason, &message, flow, BTreeMap::new(), Vec::new());
            self.hand_off_with_text(handoff, prompt);
            self.set_state(ChatState::Waiting {
                flow: Some(progress),
            });
            self.trace(
                Act::Handoff,
                topic,
                reply.confidence,
                reply.candidates.clone(),
            );
        } else {
            self.say(prompt);
            self.offer_options(flow.first());
            self.set_state(ChatState::Flow { progress });
            self.trace(
                Act::Dialog,
                topic,
                reply.confidence,
                reply.candidates.clone(),
            );
        }
    }

    /// A choice step's options, as its prompt numbers them (`1. 补偿部分货款` …), go with the
    /// question just said, so a channel can show them as buttons.
    fn offer_options(&mut self, step: &Step) {
        if let Collect::Choice(choices) = &step.collect {
            let options = dialog::numbered_options(&self.pick(&step.prompt));
            if options.len() == choices.len() {
                self.outcome.choices = options;
            }
        }
    }

    fn in_flow(&mut self, progress: Progress) {
        let Some(flow) = self.bot.flows.get(&progress.flow) else {
            // The flow was removed by an edit: the buyer is back with the bot.
            self.set_state(ChatState::Bot);
            return self.with_bot();
        };
        if self.leaves() {
            self.abandon(flow, &progress);
            let text = self.template("flow_left", &[]);
            self.say(text);
            self.set_state(ChatState::Bot);
            self.trace(Act::Dialog, Some(flow.id.to_string()), 1.0, Vec::new());
            return;
        }
        let message = self.inbound.text.clone();
        let (escape, ranked) = self.escape_from_flow(flow, &progress);
        if let Some(reason) = escape.handoff {
            let handoff = NewHandoff::from_flow(
                reason,
                &message,
                flow,
                progress.collected.clone(),
                progress.evidence.clone(),
            );
            let case =
                NewCase::from_progress(flow, &progress, flow.responsible, CaseStatus::Pending);
            let template = if reason == Reason::Angry {
                "angry"
            } else {
                "handoff"
            };
            self.outcome.case = Some(case);
            self.hand_off(handoff, template, None);
            self.trace(Act::Handoff, Some(flow.id.to_string()), 1.0, ranked);
            return;
        }
        let answer = dialog::Answer {
            text: &message,
            normalized: &self.normalized,
            attachments: &self.inbound.attachments,
        };
        let advanced = dialog::advance(flow, &progress, &answer, self.bot.engine.normalizer());
        let new_topic = escape.new_topic;
        match advanced {
            Advance::Ask(next) if !new_topic => {
                let step = flow
                    .step(&next.step)
                    .expect("advance returns a step of the flow");
                let prompt = self.pick(&step.prompt);
                self.say(prompt);
                self.offer_options(step);
                self.set_state(ChatState::Flow { progress: next });
                self.trace(Act::Dialog, Some(flow.id.to_string()), 1.0, Vec::new());
            }
            Advance::Done {
                progress: done,
                end,
            } if !new_topic => self.finish_flow(flow, &done, &end),
            Advance::Reask(next) if !new_topic && next.misses <= dialog::MAX_REASKS => {
                let step = flow
                    .step(&next.step)
                    .expect("reask stays on a step of the flow");
                let text = self.pick(&step.reask);
                self.say(text);
                self.offer_options(step);
                self.set_state(ChatState::Flow { progress: next });
                self.trace(Act::Dialog, Some(flow.id.to_string()), 1.0, Vec::new());
            }
            Advance::Reask(next) if !new_topic => {
                let handoff = NewHandoff::from_flow(
                    Reason::FlowStuck,
                    &message,
                    flow,
                    next.collected.clone(),
                    next.evidence.clone(),
                );
                self.outcome.case = Some(NewCase::from_progress(
                    flow,
                    &next,
                    flow.responsible,
                    CaseStatus::Pending,
                ));
                self.hand_off(handoff, "flow_stuck", None);
                self.trace(Act::Handoff, Some(flow.id.to_string()), 1.0, Vec::new());
            }
            _ => {
                // A new, unrelated question: the buyer has moved on, and so does the bot.
                self.abandon(flow, &progress);
                self.set_state(ChatState::Bot);
                self.with_bot();
            }
        }
    }

    /// Inside a flow, a request for a person or a complaint hands off; a confident question
    /// on another topic leaves the flow (unless it is a fitting answer to a choice step).
    fn escape_from_flow(&self, flow: &Flow, progress: &Progress) -> (Escape, Vec<Considered>) {
        let mut escape = Escape::default();
        if self.normalized.is_empty() {
            return (escape, Vec::new());
        }
        if self.angry() {
            escape.handoff = Some(Reason::Angry);
            return (escape, Vec::new());
        }
        let reply = self.bot.engine.ask(&self.inbound.text);
        let knowledge_base = self.bot.engine.knowledge_base();
        let entry = reply
            .topic
            .as_ref()
            .and_then(|t| knowledge_base.entry(t.as_str()));
        let ranked = reply.candidates.clone();
        let Some(entry) = entry else {
            return (escape, ranked);
        };
        if entry.action == Action::Handoff && self.bot.engine.rank(&self.inbound.text).triggered {
            escape.handoff = Some(match entry.id.as_str() {
                "complaint" => Reason::Complaint,
                _ => Reason::AskedForPerson,
            });
            return (escape, ranked);
        }
        let step = flow.step(&progress.step);
        let fits_step = step.is_some_and(|step| {
            let answer = dialog::Answer {
                text: &self.inbound.text,
                normalized: &self.normalized,
                attachments: &self.inbound.attachments,
            };
            !matches!(step.collect, Collect::Text { .. })
                && !matches!(
                    dialog::advance(flow, progress, &answer, self.bot.engine.normalizer()),
                    Advance::Reask(_)
                )
        });
        // Only a question leaves: "我找不到订单号" is an answer to the step, asked again.
        escape.new_topic = !flow.starts.contains(&entry.id)
            && entry.action == Action::Answer
            && !fits_step
            && reply.confidence >= LEAVE_FLOW_CONFIDENCE
            && looks_like_question(&self.inbound.text);
        (escape, ranked)
    }

    fn finish_flow(&mut self, flow: &Flow, progress: &Progress, end_id: &str) {
        let end = flow.end(end_id).unwrap_or(&flow.ends[0]);
        let responsible = end.responsible.unwrap_or(flow.responsible);
        let status = if end.handoff {
            CaseStatus::Pending
        } else {
            CaseStatus::Recorded
        };
        let case = NewCase::from_progress(flow, progress, responsible, status);
        let say = self.pick(&end.say);
        let topic = Some(flow.id.to_string());
        self.outcome.case = Some(case);
        if end.handoff {
            let message = self.inbound.text.clone();
            let handoff = NewHandoff::from_flow(
                Reason::FlowDecision,
                &message,
                flow,
                progress.collected.clone(),
                progress.evidence.clone(),
            );
            self.hand_off_with_text(handoff, say);
            self.trace(Act::Handoff, topic, 1.0, Vec::new());
        } else {
            self.say(say);
            self.set_state(ChatState::Bot);
            self.trace(Act::Dialog, topic, 1.0, Vec::new());
        }
    }

    /// Keeps what a buyer told a flow they left, for the weekly review.
    fn abandon(&mut self, flow: &Flow, progress: &Progress) {
        if !progress.collected.is_empty() || !progress.evidence.is_empty() {
            self.outcome.case = Some(NewCase::from_progress(
                flow,
                progress,
                flow.responsible,
                CaseStatus::Abandoned,
            ));
        }
    }

    // ---- waiting for a person ----------------------------------------------------------

    fn waiting(&mut self, flow: Option<Progress>) {
        if self.leaves() {
            self.outcome.cancel_handoff = true;
            if let Some(progress) = &flow {
                if let Some(flow) = self.bot.flows.get(&progress.flow) {
                    self.abandon(flow, progress);
                }
            }
            let text = self.template("handoff_cancelled", &[]);
            self.say(text);
            self.set_state(ChatState::Bot);
            self.trace(Act::Handoff, None, 1.0, Vec::new());
            return;
        }
        let Some(progress) = flow else {
            return self.answer_while_waiting();
        };
        let Some(flow) = self.bot.flows.get(&progress.flow) else {
            self.set_state(ChatState::Waiting { flow: None });
            return self.hold(true);
        };
        let message = self.inbound.text.clone();
        let answer = dialog::Answer {
            text: &message,
            normalized: &self.normalized,
            attachments: &self.inbound.attachments,
        };
        let topic = Some(flow.id.to_string());
        match dialog::advance(flow, &progress, &answer, self.bot.engine.normalizer()) {
            Advance::Ask(next) => {
                let step = flow.step(&next.step).expect("advance returns a step");
                let prompt = self.pick(&step.prompt);
                self.say(prompt);
                self.offer_options(step);
                self.outcome.handoff_details =
                    Some((next.collected.clone(), next.evidence.clone()));
                self.set_state(ChatState::Waiting { flow: Some(next) });
            }
            Advance::Reask(next) if next.misses <= dialog::MAX_REASKS => {
                let step = flow.step(&next.step).expect("reask stays on a step");
                let text = self.pick(&step.reask);
                self.say(text);
                self.offer_options(step);
                self.set_state(ChatState::Waiting { flow: Some(next) });
            }
            Advance::Reask(next) => {
                // Stop asking; the person who takes over reads the rest in the transcript.
                self.outcome.handoff_details =
                    Some((next.collected.clone(), next.evidence.clone()));
                self.set_state(ChatState::Waiting { flow: None });
                return self.hold(true);
            }
            Advance::Done {
                progress: done,
                end,
            } => {
                let end = flow.end(&end).unwrap_or(&flow.ends[0]);
                let responsible = end.responsible.unwrap_or(flow.responsible);
                self.outcome.case = Some(NewCase::from_progress(
                    flow,
                    &done,
                    responsible,
                    CaseStatus::Pending,
                ));
                self.outcome.handoff_details =
                    Some((done.collected.clone(), done.evidence.clone()));
                let say = self.pick(&end.say);
                self.say(say);
                self.set_state(ChatState::Waiting { flow: None });
            }
        }
        self.trace(Act::Dialog, topic, 1.0, Vec::new());
    }

    /// A routine question the bot is sure of is answered while the buyer waits (the person
    /// who takes over sees it in the transcript); anything else is held for them.
    fn answer_while_waiting(&mut self) {
        if self.normalized.is_empty() || self.angry() {
            return self.hold(true);
        }
        let mut context = self.outcome.conversation.memory.context.clone();
        let reply = self.bot.engine.respond(&self.inbound.text, &mut context);
        let routine = reply.action == Decision::Answer
            && reply
                .topic
                .as_ref()
                .is_some_and(|t| self.bot.flows.started_by(t).is_none());
        if !routine {
            return self.hold(true);
        }
        self.memory().context = context;
        let topic = reply.topic.as_ref().map(ToString::to_string);
        self.say(reply.reply);
        self.trace(Act::Answer, topic, reply.confidence, reply.candidates);
    }

    /// Stores the message for the person; a waiting buyer is acknowledged now and then.
    fn hold(&mut self, acknowledge: bool) {
        let now = self.inbound.at_ms;
        let due = self
            .outcome
            .conversation
            .memory
            .last_ack_ms
            .is_none_or(|last| now - last >= ACK_EVERY_MS);
        if acknowledge && due {
            let text = self.template("waiting_ack", &[]);
            self.say(text);
            self.memory().last_ack_ms = Some(now);
        }
        self.trace(Act::Hold, None, 0.0, Vec::new());
    }

    // ---- handing off -------------------------------------------------------------------

    fn hand_off(&mut self, handoff: NewHandoff, template: &str, extra: Option<String>) {
        let text = self.template(template, &[]);
        self.hand_off_with_text(handoff, text);
        if let Some(extra) = extra {
            self.say(extra);
        }
    }

    /// Queues the handoff, tells the buyer, and outside service hours says when agents are back.
    fn hand_off_with_text(&mut self, handoff: NewHandoff, text: String) {
        self.say(text);
        if !self.hours.is_open(self.inbound.at_ms) {
            let open = self.hours.next_opening(self.inbound.at_ms);
            let notice = self.template("after_hours", &[("open", open)]);
            self.say(notice);
        }
        self.outcome.handoff = Some(handoff);
        self.memory().last_ack_ms = Some(self.inbound.at_ms);
        self.set_state(ChatState::Waiting { flow: None });
    }

    /// The last gate: a reply that breaks a phrasing rule is replaced by the handoff notice.
    fn finish(mut self) -> Outcome {
        let rules = &self.bot.engine.knowledge_base().phrasing;
        let safe = self.template("handoff", &[]);
        for text in &mut self.outcome.replies {
            let violations = phrasing::check(rules, text);
            if !violations.is_empty() {
                let listing: Vec<String> = violations.iter().map(ToString::to_string).collect();
                tracing::warn!(violations = ?listing, "reply broke a phrasing rule; sending the handoff notice instead");
                *text = safe.clone();
                // The notice offers nothing to choose.
                self.outcome.choices.clear();
            }
        }
        self.outcome
    }
}

#[derive(Default)]
struct Escape {
    handoff: Option<Reason>,
    new_topic: bool,
}

/// A rating of 1–5: "5", "5分", "五星", "4 stars".
fn score(normalized: &str) -> Option<u8> {
    let compact: String = normalized.split_whitespace().collect();
    let core = compact
        .trim_end_matches(['分', '星'])
        .trim_end_matches("stars")
        .trim_end_matches("star");
    let score = match core {
        "1" | "一" => 1,
        "2" | "二" | "两" => 2,
        "3" | "三" => 3,
        "4" | "四" => 4,
        "5" | "五" => 5,
        _ => return None,
    };
    Some(score)
}

/// The message without a leading 那/那么/还有 or "what about", when it has one.
fn strip_follow_up_marker(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let lower = trimmed.to_lowercase();
    for marker in ["what about", "how about", "and"] {
        if let Some(rest) = lower.strip_prefix(marker) {
            if rest.starts_with(' ') {
                return Some(rest.trim().to_string());
            }
        }
    }
    for marker in ["那么", "那", "还有", "另外"] {
        if let Some(rest) = trimmed.strip_prefix(marker) {
            let rest = rest.trim_start_matches([',', '，', ' ']);
            return (!rest.is_empty()).then(|| rest.to_string());
        }
    }
    None
}

fn looks_like_question(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "?", "？", "吗", "呢", "怎么", "如何", "多久", "什么", "能否", "可以", "how", "what",
        "when", "can ", "do you",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_keys_refuse_empty_long_and_control_ids() {
        assert!(ChatKey::parse("http", "abc-123").is_some());
        assert!(ChatKey::parse("http", "").is_none());
        assert!(ChatKey::parse("http", "   ").is_none());
        assert!(ChatKey::parse("http", &"x".repeat(129)).is_none());
        assert!(ChatKey::parse("http", "a\u{0}b").is_none());
        assert!(ChatKey::parse("HTTP", "a").is_none());
    }

    #[test]
    fn http_chat_ids_must_be_long_url_safe_secrets() {
        #[track_caller]
        fn check(id: &str, accepted: bool) {
            let key = ChatKey::parse_http(id);
            assert_eq!(key.is_some(), accepted, "{id:?}");
            if let Some(key) = key {
                assert_eq!((key.channel(), key.id()), ("http", id));
            }
        }
        check("rAnd0m-url_safe-Secret9", true);
        check(&"a".repeat(22), true);
        check(&"a".repeat(128), true);
        check(&"a".repeat(21), false);
        check(&"a".repeat(129), false);
        check("1", false);
        check("42", false);
        check("web-5f2c9a", false);
        check("telegram:123456789012345678901234", false);
        check("aaaaaaaaaaaaaaaaaaaaaa aaaa", false);
        check("aaaaaaaaaaaaaaaaaaaaaa/aaaa", false);
        check("aaaaaaaaaaaaaaaaaaaaaa.aaaa", false);
        check("aaaaaaaaaaaaaaaaaaaaaa\u{0}", false);
        check("店小二店小二店小二店小二店小二店小二店小二店小二", false);
    }

    #[test]
    fn follow_up_markers_are_stripped() {
        assert_eq!(
            strip_follow_up_marker("那退货呢").as_deref(),
            Some("退货呢")
        );
        assert_eq!(
            strip_follow_up_marker("What about returns?").as_deref(),
            Some("returns?")
        );
        assert_eq!(strip_follow_up_marker("退货呢"), None);
        assert_eq!(strip_follow_up_marker("那"), None);
    }

    #[test]
    fn states_round_trip_through_json() {
        let conversation = Conversation {
            state: ChatState::Waiting { flow: None },
            memory: Memory::default(),
        };
        let json = serde_json::to_string(&conversation).unwrap();
        assert_eq!(
            serde_json::from_str::<Conversation>(&json).unwrap(),
            conversation
        );
    }
}
