//! Finds the knowledge entries a question is about: tantivy retrieves example questions,
//! titles and keywords that share words or sound bigrams with it; `similarity::parts`
//! re-ranks them; the result is a ranking of entries with scores in [0, 1].
//!
//! The index lives in RAM and is rebuilt from a `KnowledgeBase` in well under a second.
//! Queries are built term by term from the same analyzer the index uses (tantivy's
//! QueryParser would turn a run of Chinese into a phrase query).

use std::collections::HashMap;

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, TantivyDocument, Term};

use crate::analyze::{Analysis, Analyzer};
use crate::catalog::Masker;
use crate::knowledge::KnowledgeBase;
use crate::normalize::{contains_phrase, Normalizer};
use crate::similarity::{self, Features, Vocabulary, Weights};
use crate::Result;

const TOKENIZER: &str = "xiaoer";
/// Indexed texts fetched per query before re-ranking.
const RETRIEVE: usize = 40;
/// Entries returned, best first.
const KEEP: usize = 5;

/// The model that turns evidence into probabilities: a conditional logit over the candidate
/// entries plus a "none of them" option, so a candidate's probability reflects both its own
/// evidence and its lead over the others. Fitted on the sample shop's tuning split (the fit
/// pooled over every shop's tuning split, `cargo run --release --example fit`, scored the three
/// shops as well but answered 10 of 300 synthetic FAQ questions at 10,000 entries, against 297
/// for this one: see BENCHMARKS.md); the held-out splits are never used for it.
const MODEL_NONE: f32 = 12.961;
const MODEL_WEIGHTS: [f32; FEATURES] = [0.111, 4.439, 2.539, 1.652, 4.302, 0.210];
/// Number of evidence features the model reads.
pub const FEATURES: usize = 6;

/// The model's utility of one candidate's evidence.
pub fn utility(features: &[f32; FEATURES], weights: &[f32; FEATURES]) -> f32 {
    features.iter().zip(weights).map(|(x, w)| x * w).sum()
}

/// Probabilities of each utility against the others and the "none" option.
pub fn probabilities(utilities: &[f32], none: f32) -> Vec<f32> {
    let top = utilities.iter().copied().fold(none, f32::max);
    let none_term = (none - top).exp();
    let terms: Vec<f32> = utilities.iter().map(|u| (u - top).exp()).collect();
    let total: f32 = none_term + terms.iter().sum::<f32>();
    terms.iter().map(|t| t / total).collect()
}

/// An entry the question may be about.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index into `KnowledgeBase::entries`.
    pub entry: usize,
    /// Probability that the entry answers the question, in [0, 1].
    pub score: f32,
    pub evidence: Evidence,
}

/// What the matcher saw of an entry in a question, each part in [0, 1].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    /// Best similarity blend with one of the entry's texts.
    pub similarity: f32,
    /// Best share of one of the entry's texts found in the question.
    pub text_in_question: f32,
    /// Best share of the question found in one of the entry's texts.
    pub question_in_text: f32,
    /// Share of the question the entry's whole vocabulary explains.
    pub coverage: f32,
    /// ln(1 + weight of the question's words and bigrams the entry's vocabulary shares).
    pub mass: f32,
    /// ln(1 + best BM25 score of one of the entry's texts).
    pub bm25: f32,
}

impl Evidence {
    /// The model's inputs, in `MODEL_WEIGHTS` order.
    pub fn features(&self) -> [f32; FEATURES] {
        [
            self.similarity,
            self.text_in_question,
            self.question_in_text,
            self.coverage,
            self.mass,
            self.bm25,
        ]
    }

    fn merge(&mut self, other: &Evidence) {
        self.similarity = self.similarity.max(other.similarity);
        self.text_in_question = self.text_in_question.max(other.text_in_question);
        self.question_in_text = self.question_in_text.max(other.question_in_text);
        self.bm25 = self.bm25.max(other.bm25);
    }
}

/// Entries ranked for one question.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Best first, one per entry, at most `KEEP`.
    pub candidates: Vec<Candidate>,
    /// True when the top entry is certain: a trigger phrase of it appears in the question, or
    /// the question is, once normalised and masked, one of its example questions.
    pub triggered: bool,
}

impl Ranking {
    pub fn best(&self) -> Option<&Candidate> {
        self.candidates.first()
    }

    /// Best score minus the runner-up's (the whole best score when there is none).
    pub fn margin(&self) -> f32 {
        match self.candidates.as_slice() {
            [] => 0.0,
            [only] => only.score,
            [first, second, ..] => first.score - second.score,
        }
    }
}

/// One text of the index: which entry it belongs to, what it is, and its prepared features.
struct Indexed {
    entry: usize,
    /// True for an example question (false for a title or keyword).
    example: bool,
    /// The text in matching form: normalised and masked.
    prepared: String,
    analysis: Analysis,
    features: Features,
}

/// The in-RAM index over a knowledge base.
pub struct Matcher {
    reader: IndexReader,
    text_field: Field,
    /// Per segment, the column mapping a document to its position in `indexed`.
    columns: Vec<Column<u64>>,
    indexed: Vec<Indexed>,
    /// Per entry, the units all its texts use.
    vocabularies: Vec<Vocabulary>,
    /// Per entry, its texts' positions in `indexed` (contiguous).
    runs: Vec<std::ops::Range<usize>>,
    weights: Weights,
    analyzer: Analyzer,
    masker: Masker,
    /// Each indexed text in matching form and the positions (into `indexed`) that hold it,
    /// in index order, for exact hits.
    exact: HashMap<String, Vec<usize>>,
    /// Normalised trigger phrases and the entry each selects.
    triggers: Vec<(String, usize)>,
}

impl Matcher {
    /// Indexes every example question, title and keyword of `knowledge_base`.
    /// Texts are normalised by `normalizer`, then product names, colours, sizes and numbers
    /// are masked; `find` expects normalised text and masks it the same way.
    pub fn build(
        knowledge_base: &KnowledgeBase,
        normalizer: &Normalizer,
        analyzer: &Analyzer,
    ) -> Result<Self> {
        let masker = Masker::new(&knowledge_base.catalog, |t| normalizer.normalize(t));
        let prepare = |text: &str| masker.mask(&normalizer.normalize(text));
        let mut texts: Vec<(usize, String, Analysis, bool)> = Vec::new();
        for (entry_index, entry) in knowledge_base.entries.iter().enumerate() {
            let examples = entry.examples.iter().map(|text| (text, true));
            let others = entry
                .keywords
                .iter()
                .chain([&entry.title, &entry.title_en])
                .map(|text| (text, false));
            for (text, example) in examples.chain(others) {
                let normalized = prepare(text);
                if normalized.is_empty() {
                    continue;
                }
                let analysis = analyzer.analyze(&normalized);
                texts.push((entry_index, normalized, analysis, example));
            }
        }
        // Texts are pushed entry by entry: each entry's are one contiguous run (a filter per
        // entry would be quadratic in the size of the base).
        let mut runs: Vec<std::ops::Range<usize>> = vec![0..0; knowledge_base.entries.len()];
        for (position, text) in texts.iter().enumerate() {
            let run = &mut runs[text.0];
            if run.start == run.end {
                *run = position..position;
            }
            run.end = position + 1;
        }
        let weights = Weights::from_documents(
            runs.iter()
                .map(|run| texts[run.clone()].iter().map(|t| &t.2).collect()),
        );

        let mut schema = Schema::builder();
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs);
        let text_field = schema.add_text_field(
            "text",
            TextOptions::default().set_indexing_options(indexing),
        );
        let position_field = schema.add_u64_field("position", FAST);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(
            TOKENIZER,
            ShopTokenizer {
                analyzer: analyzer.clone(),
            },
        );
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        for (position, (_, normalized, _, _)) in texts.iter().enumerate() {
            let mut document = TantivyDocument::default();
            document.add_text(text_field, normalized);
            document.add_u64(position_field, position as u64);
            writer.add_document(document)?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let searcher = reader.searcher();
        let columns = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.fast_fields().u64("position"))
            .collect::<tantivy::Result<Vec<_>>>()?;

        let mut exact: HashMap<String, Vec<usize>> = HashMap::new();
        for (position, (_, prepared, _, _)) in texts.iter().enumerate() {
            if !Masker::only_placeholders(prepared) {
                exact.entry(prepared.clone()).or_default().push(position);
            }
        }
        let vocabularies = runs
            .iter()
            .map(|run| Vocabulary::from_analyses(texts[run.clone()].iter().map(|t| &t.2)))
            .collect();
        let indexed = texts
            .into_iter()
            .map(|(entry, prepared, analysis, example)| Indexed {
                entry,
                example,
                features: weights.features(&prepared, &analysis),
                prepared,
                analysis,
            })
            .collect();
        let triggers = knowledge_base
            .entries
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.triggers.iter().map(move |t| (normalizer.normalize(t), i)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        Ok(Matcher {
            reader,
            text_field,
            columns,
            indexed,
            vocabularies,
            runs,
            weights,
            analyzer: analyzer.clone(),
            masker,
            exact,
            triggers,
        })
    }

    /// A normalised text in the form the index holds (products, colours, sizes and numbers
    /// masked): two texts with one matching form are the same question to the matcher.
    pub fn matching_form(&self, normalized: &str) -> String {
        self.masker.mask(normalized)
    }

    /// Ranks entries for a normalised question.
    pub fn find(&self, normalized: &str) -> Ranking {
        self.rank(normalized, None)
    }

    /// Ranks one of `entry`'s example questions (normalised) as if the entry lacked it: what
    /// the rest of the knowledge base makes of it. The entry's example questions with the same
    /// matching form are left out of retrieval, exact hits and the entry's vocabulary; term
    /// weights and BM25 statistics still count them. That is a close approximation of
    /// rebuilding the index without the example, which takes ~45 ms per example (a minute
    /// for a knowledge base of 1,300 examples) where this takes one query's time.
    pub fn find_leaving_out(&self, normalized: &str, entry: usize) -> Ranking {
        self.rank(normalized, Some(entry))
    }

    fn rank(&self, normalized: &str, leave_out: Option<usize>) -> Ranking {
        let prepared = &self.masker.mask(normalized);
        let left_out = |position: usize| {
            let text = &self.indexed[position];
            leave_out == Some(text.entry) && text.example && text.prepared == *prepared
        };
        let n_left_out = match leave_out {
            Some(entry) => self.runs[entry].clone().filter(|&p| left_out(p)).count(),
            None => 0,
        };
        // The left-out entry's vocabulary without the left-out texts.
        let reduced_vocabulary = leave_out.filter(|_| n_left_out > 0).map(|entry| {
            let kept = self.runs[entry]
                .clone()
                .filter(|&p| !left_out(p))
                .map(|p| &self.indexed[p].analysis);
            (entry, Vocabulary::from_analyses(kept))
        });
        let vocabulary = |entry: usize| match &reduced_vocabulary {
            Some((reduced, vocabulary)) if *reduced == entry => vocabulary,
            _ => &self.vocabularies[entry],
        };
        let analysis = self.analyzer.analyze(prepared);
        let query_features = self.weights.features(prepared, &analysis);
        let mut seen: Vec<(usize, Evidence)> = Vec::new();
        for (position, bm25) in self.retrieve(prepared, RETRIEVE + n_left_out) {
            if left_out(position) {
                continue;
            }
            let indexed = &self.indexed[position];
            let parts = similarity::parts(&query_features, &indexed.features);
            let evidence = Evidence {
                similarity: parts.blend(),
                text_in_question: parts.second_in_first,
                question_in_text: parts.first_in_second,
                coverage: 0.0,
                mass: 0.0,
                bm25: bm25.ln_1p(),
            };
            match seen.iter_mut().find(|(entry, _)| *entry == indexed.entry) {
                Some((_, best)) => best.merge(&evidence),
                None => seen.push((indexed.entry, evidence)),
            }
        }
        let mut best: Vec<Candidate> = seen
            .into_iter()
            .map(|(entry, mut evidence)| {
                evidence.coverage = vocabulary(entry).coverage(&query_features);
                evidence.mass = vocabulary(entry).matched_mass(&query_features).ln_1p();
                Candidate {
                    entry,
                    score: 0.0,
                    evidence,
                }
            })
            .collect();
        let utilities: Vec<f32> = best
            .iter()
            .map(|c| utility(&c.evidence.features(), &MODEL_WEIGHTS))
            .collect();
        for (candidate, probability) in best.iter_mut().zip(probabilities(&utilities, MODEL_NONE)) {
            candidate.score = probability;
        }
        best.sort_by(|a, b| b.score.total_cmp(&a.score));
        let exact = self
            .exact
            .get(prepared)
            .and_then(|positions| positions.iter().find(|&&p| !left_out(p)))
            .map(|&p| self.indexed[p].entry);
        self.ranking(normalized, exact, best)
    }

    /// The ranking: a trigger phrase's or an exact hit's entry first and certain, then the
    /// model's candidates, one per entry.
    fn ranking(&self, normalized: &str, exact: Option<usize>, best: Vec<Candidate>) -> Ranking {
        let mut ranking = Ranking::default();
        let trigger = self
            .triggers
            .iter()
            .find(|(t, _)| contains_phrase(normalized, t))
            .map(|(_, e)| *e);
        if let Some(entry) = trigger.or(exact) {
            let evidence = Evidence {
                similarity: 1.0,
                text_in_question: 1.0,
                question_in_text: 1.0,
                coverage: 1.0,
                mass: 0.0,
                bm25: 0.0,
            };
            ranking.candidates.push(Candidate {
                entry,
                score: 1.0,
                evidence,
            });
            ranking.triggered = true;
        }
        for candidate in best {
            if ranking.candidates.len() == KEEP {
                break;
            }
            if !ranking
                .candidates
                .iter()
                .any(|c| c.entry == candidate.entry)
            {
                ranking.candidates.push(candidate);
            }
        }
        ranking
    }

    /// Positions (into `indexed`) and BM25 scores of the texts sharing most with the question.
    fn retrieve(&self, normalized: &str, limit: usize) -> Vec<(usize, f32)> {
        let mut terms = self.analyzer.index_terms(normalized);
        terms.sort();
        terms.dedup();
        if terms.is_empty() {
            return Vec::new();
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let term = Term::from_field_text(self.text_field, t);
                let query: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                (Occur::Should, query)
            })
            .collect();
        let searcher = self.reader.searcher();
        let top = searcher
            .search(
                &BooleanQuery::new(clauses),
                &TopDocs::with_limit(limit).order_by_score(),
            )
            .unwrap_or_default();
        top.into_iter()
            .filter_map(|(bm25, address)| {
                let position = self
                    .columns
                    .get(address.segment_ord as usize)?
                    .first(address.doc_id)?;
                Some((position as usize, bm25))
            })
            .collect()
    }

    /// Number of indexed texts.
    pub fn len(&self) -> usize {
        self.indexed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indexed.is_empty()
    }
}

/// tantivy adapter over `Analyzer::index_terms`.
#[derive(Clone)]
struct ShopTokenizer {
    analyzer: Analyzer,
}

struct ShopTokenStream {
    tokens: Vec<Token>,
    next: usize,
}

impl Tokenizer for ShopTokenizer {
    type TokenStream<'a> = ShopTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ShopTokenStream {
        let tokens = self
            .analyzer
            .index_terms(text)
            .into_iter()
            .enumerate()
            .map(|(position, text)| Token {
                position,
                text,
                ..Token::default()
            })
            .collect();
        ShopTokenStream { tokens, next: 0 }
    }
}

impl TokenStream for ShopTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}
