//! Turns one buyer message into the bot's decision and reply: normalise, match, decide
//! (answer / clarify / dialog / handoff), render. Synchronous and free of I/O once built;
//! the only orchestrator of the core modules.
//!
//! Buyer input never produces an error: empty, huge or unreadable text, a low score and
//! a tie all become a reply the buyer can act on.

use std::path::Path;

use serde::Serialize;

use crate::analyze::Analyzer;
use crate::catalog::Product;
use crate::config::Thresholds;
use crate::knowledge::{self, Action, Entry, EntryId, KnowledgeBase};
use crate::matcher::{Matcher, Ranking};
use crate::normalize::{contains_phrase, detect_lang, ordinal, Lang, Normalizer};
use crate::similarity::{self, Weights};
use crate::{phrasing, reply, Error, Result};

/// Longest message the matcher reads; longer ones go to a person, who can read them.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Whether a message is longer than the matcher reads (`MAX_MESSAGE_CHARS`).
pub fn too_long_to_read(text: &str) -> bool {
    text.chars().count() > MAX_MESSAGE_CHARS
}
/// Topics offered when the bot asks which one was meant.
const CLARIFY_CHOICES: usize = 3;

/// What the bot chose to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Sent an entry's approved answer.
    Answer,
    /// Asked which of a few topics was meant.
    Clarify,
    /// Started an after-sales flow (for now: sent its first step).
    Dialog,
    /// Handed the chat to a person.
    Handoff,
}

/// A topic the bot considered, with its score.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Considered {
    pub topic: EntryId,
    pub score: f32,
}

/// What the matcher's ranking calls for, before any text is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Answer with this entry (index into the knowledge base's entries).
    Answer(usize),
    /// Ask which of these entries was meant.
    Clarify(Vec<usize>),
    Handoff,
}

/// How sure the bot is of its best topic, in [0, 1]: the model's probability, discounted
/// when a runner-up is close (a tie means "ask", not "guess").
pub fn confidence(ranking: &Ranking, thresholds: &Thresholds) -> f32 {
    let Some(best) = ranking.best() else {
        return 0.0;
    };
    if ranking.triggered {
        return 1.0;
    }
    let tie = (thresholds.margin - ranking.margin()).max(0.0) / thresholds.margin.max(1e-6);
    (best.score * (1.0 - 0.5 * tie)).clamp(0.0, 1.0)
}

/// Answer when confident; offer the close topics when the best is plausible but unsure;
/// otherwise hand off. Handoff entries are never offered as choices.
pub fn decide(
    ranking: &Ranking,
    knowledge_base: &KnowledgeBase,
    thresholds: &Thresholds,
) -> Verdict {
    let Some(best) = ranking.best() else {
        return Verdict::Handoff;
    };
    if ranking.triggered || confidence(ranking, thresholds) >= thresholds.answer {
        return Verdict::Answer(best.entry);
    }
    if best.score < thresholds.clarify {
        return Verdict::Handoff;
    }
    let choices: Vec<usize> = ranking
        .candidates
        .iter()
        .filter(|c| c.score >= thresholds.clarify.min(best.score / 2.0))
        .filter(|c| knowledge_base.entries[c.entry].action != Action::Handoff)
        .map(|c| c.entry)
        .take(CLARIFY_CHOICES)
        .collect();
    if choices.is_empty() {
        Verdict::Handoff
    } else {
        Verdict::Clarify(choices)
    }
}

/// The bot's reply to one message, with what led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub action: Decision,
    pub topic: Option<EntryId>,
    pub confidence: f32,
    pub candidates: Vec<Considered>,
    /// The exact text the buyer gets.
    pub reply: String,
    #[serde(skip)]
    pub lang: Lang,
    /// Topics offered by a clarify reply, in the numbered order.
    #[serde(skip)]
    pub choices: Vec<EntryId>,
}

/// What a conversation remembers between messages (the REPL's; the conversation engine
/// keeps its own in the store).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Context {
    /// The last product the buyer named, for "多少钱" after "这款T恤".
    pub product: Option<String>,
    /// The choices of the last clarify question.
    pub choices: Vec<EntryId>,
}

/// The knowledge base with its index, ready to answer.
pub struct Engine {
    knowledge_base: KnowledgeBase,
    normalizer: Normalizer,
    analyzer: Analyzer,
    matcher: Matcher,
    /// Normalised product names and aliases, longest first, with the product's index.
    product_names: Vec<(String, usize)>,
    thresholds: Thresholds,
}

impl Engine {
    /// Loads and validates `dir`, then builds the index. Any diagnostic refuses to start.
    pub fn load(dir: &Path, thresholds: Thresholds) -> Result<Engine> {
        let (knowledge_base, diagnostics) = knowledge::load_dir(dir);
        if !diagnostics.is_empty() {
            let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            return Err(Error::InvalidKnowledge {
                path: dir.to_path_buf(),
                count: diagnostics.len(),
                listing: listing.join("\n"),
            });
        }
        Engine::build(knowledge_base, thresholds)
    }

    /// Builds the engine over an already validated knowledge base.
    pub fn build(knowledge_base: KnowledgeBase, thresholds: Thresholds) -> Result<Engine> {
        let normalizer = Normalizer::new(&knowledge_base.lexicon)?;
        let analyzer = Analyzer::new(&knowledge_base.lexicon.shop_words);
        let matcher = Matcher::build(&knowledge_base, &normalizer, &analyzer)?;
        let mut product_names: Vec<(String, usize)> = knowledge_base
            .catalog
            .product
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                p.aliases
                    .iter()
                    .chain([&p.name, &p.name_en])
                    .map(move |n| (n, i))
            })
            .map(|(name, i)| (normalizer.normalize(name), i))
            .filter(|(name, _)| !name.is_empty())
            .collect();
        product_names.sort_by_key(|(name, _)| std::cmp::Reverse(name.chars().count()));
        Ok(Engine {
            knowledge_base,
            normalizer,
            analyzer,
            matcher,
            product_names,
            thresholds,
        })
    }

    pub fn knowledge_base(&self) -> &KnowledgeBase {
        &self.knowledge_base
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// A question as the matcher reads it (normalised and masked): evaluation splits are
    /// disjoint in this form, and a question in the form of an example is an exact hit.
    pub fn matching_form(&self, text: &str) -> String {
        self.matcher.matching_form(&self.normalizer.normalize(text))
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Scores question pairs with the matcher's own similarity. Term weights come from the
    /// questions given (each one a document), so common words of that corpus count little.
    pub fn similarity_scores(&self, pairs: &[(String, String)]) -> Vec<f32> {
        self.similarity_features(pairs)
            .iter()
            .map(|(a, b)| similarity::score(a, b))
            .collect()
    }

    /// The overlap parts behind `similarity_scores` (for fitting the pair model).
    pub fn similarity_parts(&self, pairs: &[(String, String)]) -> Vec<similarity::Parts> {
        self.similarity_features(pairs)
            .iter()
            .map(|(a, b)| similarity::parts(a, b))
            .collect()
    }

    /// Both texts of each pair prepared for scoring, with term weights from all the pairs.
    fn similarity_features(
        &self,
        pairs: &[(String, String)],
    ) -> Vec<(similarity::Features, similarity::Features)> {
        let prepare = |text: &str| {
            let normalized = self.normalizer.normalize(text);
            let analysis = self.analyzer.analyze(&normalized);
            (normalized, analysis)
        };
        let prepared: Vec<_> = pairs
            .iter()
            .map(|(a, b)| (prepare(a), prepare(b)))
            .collect();
        let weights =
            Weights::from_documents(prepared.iter().flat_map(|(a, b)| [vec![&a.1], vec![&b.1]]));
        prepared
            .iter()
            .map(|((na, aa), (nb, ab))| (weights.features(na, aa), weights.features(nb, ab)))
            .collect()
    }

    /// The matcher's ranking for a message (for tuning tools and diagnostics).
    pub fn rank(&self, text: &str) -> Ranking {
        self.matcher.find(&self.normalizer.normalize(text))
    }

    /// The matcher's ranking for example question `text` of entry `entry` (an index into the
    /// knowledge base's entries) as if the entry lacked it (see `Matcher::find_leaving_out`).
    pub fn rank_leaving_out(&self, text: &str, entry: usize) -> Ranking {
        self.matcher
            .find_leaving_out(&self.normalizer.normalize(text), entry)
    }

    /// The thresholds `decide` and `confidence` apply.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Answers a single message with no conversation around it.
    pub fn ask(&self, text: &str) -> Reply {
        self.respond(text, &mut Context::default())
    }

    /// Answers a message within a conversation, updating what it remembers. The reply has
    /// passed the phrasing check: one that would break a rule (a template filled with
    /// unlucky values) is logged and replaced by the handoff notice, checked at load.
    pub fn respond(&self, text: &str, context: &mut Context) -> Reply {
        let reply = self.compose(text, context);
        let violations = phrasing::check(&self.knowledge_base.phrasing, &reply.reply);
        if violations.is_empty() {
            return reply;
        }
        let listing: Vec<String> = violations.iter().map(ToString::to_string).collect();
        tracing::warn!(topic = ?reply.topic, violations = ?listing, "reply broke a phrasing rule; handing off instead");
        let mut safe = self.handoff(reply.confidence, reply.candidates, reply.lang);
        safe.topic = reply.topic;
        safe
    }

    fn compose(&self, text: &str, context: &mut Context) -> Reply {
        let lang = detect_lang(text);
        if too_long_to_read(text) {
            return self.system_reply(Decision::Handoff, "too_long", lang);
        }
        let normalized = self.normalizer.normalize(text);
        if normalized.is_empty() {
            return self.system_reply(Decision::Clarify, "empty", lang);
        }
        if let Some(choice) = self.chosen(&normalized, &context.choices) {
            context.choices.clear();
            return self.reply_with(choice, 1.0, Vec::new(), &normalized, lang, context);
        }
        let product = self.product_named(&normalized);
        if let Some(product) = product {
            context.product = Some(product.id.clone());
        }
        let ranking = self.matcher.find(&normalized);
        let candidates: Vec<Considered> = ranking
            .candidates
            .iter()
            .take(CLARIFY_CHOICES)
            .map(|c| Considered {
                topic: self.knowledge_base.entries[c.entry].id.clone(),
                score: c.score,
            })
            .collect();
        let confidence = confidence(&ranking, &self.thresholds);
        match decide(&ranking, &self.knowledge_base, &self.thresholds) {
            Verdict::Answer(entry) => {
                context.choices.clear();
                let topic = self.knowledge_base.entries[entry].id.clone();
                self.reply_with(topic, confidence, candidates, &normalized, lang, context)
            }
            Verdict::Clarify(choices) => {
                let choices: Vec<&Entry> = choices
                    .iter()
                    .map(|&i| &self.knowledge_base.entries[i])
                    .collect();
                context.choices = choices.iter().map(|e| e.id.clone()).collect();
                Reply {
                    action: Decision::Clarify,
                    topic: None,
                    confidence,
                    candidates,
                    reply: reply::clarify(&self.knowledge_base, &choices, lang),
                    lang,
                    choices: context.choices.clone(),
                }
            }
            Verdict::Handoff => self.handoff(confidence, candidates, lang),
        }
    }

    fn reply_with(
        &self,
        topic: EntryId,
        confidence: f32,
        candidates: Vec<Considered>,
        normalized: &str,
        lang: Lang,
        context: &Context,
    ) -> Reply {
        let entry = self
            .knowledge_base
            .entry(topic.as_str())
            .expect("topic comes from this knowledge base");
        let product = self.product_named(normalized).or_else(|| {
            self.product_by_id(context.product.as_deref())
                .filter(|p| self.fits_named_sizes(p, normalized))
        });
        let text = match entry.action {
            Action::Answer => reply::product_answer(
                &self.knowledge_base,
                topic.as_str(),
                product,
                normalized,
                lang,
            )
            .unwrap_or_else(|| reply::answer(entry, lang)),
            Action::Dialog | Action::Handoff => reply::answer(entry, lang),
        };
        let action = match entry.action {
            Action::Answer => Decision::Answer,
            Action::Dialog => Decision::Dialog,
            Action::Handoff => Decision::Handoff,
        };
        Reply {
            action,
            topic: Some(topic),
            confidence,
            candidates,
            reply: text,
            lang,
            choices: Vec::new(),
        }
    }

    fn handoff(&self, confidence: f32, candidates: Vec<Considered>, lang: Lang) -> Reply {
        let text = reply::template(&self.knowledge_base, "handoff", lang, &[]);
        Reply {
            action: Decision::Handoff,
            topic: None,
            confidence,
            candidates,
            reply: text,
            lang,
            choices: Vec::new(),
        }
    }

    fn system_reply(&self, action: Decision, template: &str, lang: Lang) -> Reply {
        let text = reply::template(&self.knowledge_base, template, lang, &[]);
        Reply {
            action,
            topic: None,
            confidence: 0.0,
            candidates: Vec::new(),
            reply: text,
            lang,
            choices: Vec::new(),
        }
    }

    /// The product a normalised message names, by its longest alias.
    fn product_named(&self, normalized: &str) -> Option<&Product> {
        let (_, index) = self
            .product_names
            .iter()
            .find(|(name, _)| contains_phrase(normalized, name))?;
        self.knowledge_base.catalog.product.get(*index)
    }

    /// False when the message names a size the product lacks ("红色M码还有吗" after talking
    /// about shoes is about another product).
    fn fits_named_sizes(&self, product: &Product, normalized: &str) -> bool {
        let catalog = &self.knowledge_base.catalog;
        let named = catalog
            .product
            .iter()
            .flat_map(|p| &p.sizes)
            .filter(|size| contains_phrase(normalized, &self.normalizer.normalize(size)));
        named.into_iter().all(|size| product.sizes.contains(size))
    }

    fn product_by_id(&self, id: Option<&str>) -> Option<&Product> {
        self.knowledge_base
            .catalog
            .product
            .iter()
            .find(|p| Some(p.id.as_str()) == id)
    }

    /// The topic a buyer picked from a clarify question: "2", "第二个", "second", or its title.
    fn chosen(&self, normalized: &str, choices: &[EntryId]) -> Option<EntryId> {
        if choices.is_empty() {
            return None;
        }
        if let Some(index) = ordinal(normalized) {
            return choices.get(index).cloned();
        }
        choices
            .iter()
            .find(|id| {
                self.knowledge_base.entry(id.as_str()).is_some_and(|e| {
                    [&e.title, &e.title_en]
                        .iter()
                        .any(|t| self.normalizer.normalize(t) == normalized)
                })
            })
            .cloned()
    }
}
