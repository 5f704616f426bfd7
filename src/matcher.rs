//! Finds the knowledge entries a question is about: tantivy retrieves example questions,
//! titles and keywords that share words or sound bigrams with it; `similarity::score`
//! re-ranks them; the result is a ranking of entries with scores in [0, 1].
//!
//! The index lives in RAM and is rebuilt from a `KnowledgeBase` in well under a second.
//! Queries are built term by term from the same analyzer the index uses (tantivy's
//! QueryParser would turn a run of Chinese into a phrase query).

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexReader, TantivyDocument, Term};

use crate::analyze::{Analysis, Analyzer};
use crate::knowledge::KnowledgeBase;
use crate::normalize::{contains_phrase, Normalizer};
use crate::similarity::{self, Features, Weights};
use crate::Result;

const TOKENIZER: &str = "xiaoer";
/// Indexed texts fetched per query before re-ranking.
const RETRIEVE: usize = 40;
/// Entries returned, best first.
const KEEP: usize = 5;

/// An entry the question may be about.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Index into `KnowledgeBase::entries`.
    pub entry: usize,
    /// Similarity of the question to the entry's closest text, in [0, 1].
    pub score: f32,
}

/// Entries ranked for one question.
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Best first, one per entry, at most `KEEP`.
    pub candidates: Vec<Candidate>,
    /// True when a trigger phrase of the top entry appears in the question.
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

/// One text of the index: which entry it belongs to and its prepared features.
struct Indexed {
    entry: usize,
    features: Features,
}

/// The in-RAM index over a knowledge base.
pub struct Matcher {
    reader: IndexReader,
    text_field: Field,
    /// Per segment, the column mapping a document to its position in `indexed`.
    columns: Vec<Column<u64>>,
    indexed: Vec<Indexed>,
    weights: Weights,
    analyzer: Analyzer,
    /// Normalised trigger phrases and the entry each selects.
    triggers: Vec<(String, usize)>,
}

impl Matcher {
    /// Indexes every example question, title and keyword of `knowledge_base`.
    pub fn build(knowledge_base: &KnowledgeBase, normalizer: &Normalizer, analyzer: &Analyzer) -> Result<Self> {
        let mut texts: Vec<(usize, String, Analysis)> = Vec::new();
        for (entry_index, entry) in knowledge_base.entries.iter().enumerate() {
            let sources = entry.examples.iter().chain(&entry.keywords).chain([&entry.title, &entry.title_en]);
            for text in sources {
                let normalized = normalizer.normalize(text);
                if normalized.is_empty() {
                    continue;
                }
                let analysis = analyzer.analyze(&normalized);
                texts.push((entry_index, normalized, analysis));
            }
        }
        let weights = Weights::from_documents((0..knowledge_base.entries.len()).map(|entry_index| {
            texts.iter().filter(|t| t.0 == entry_index).map(|t| &t.2).collect()
        }));

        let mut schema = Schema::builder();
        let indexing = TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs);
        let text_field = schema.add_text_field("text", TextOptions::default().set_indexing_options(indexing));
        let position_field = schema.add_u64_field("position", FAST);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(TOKENIZER, ShopTokenizer { analyzer: analyzer.clone() });
        let mut writer = index.writer_with_num_threads(1, 50_000_000)?;
        for (position, (_, normalized, _)) in texts.iter().enumerate() {
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

        let indexed = texts
            .iter()
            .map(|(entry, normalized, analysis)| Indexed {
                entry: *entry,
                features: weights.features(normalized, analysis),
            })
            .collect();
        let triggers = knowledge_base
            .entries
            .iter()
            .enumerate()
            .flat_map(|(i, e)| e.triggers.iter().map(move |t| (normalizer.normalize(t), i)))
            .filter(|(t, _)| !t.is_empty())
            .collect();
        Ok(Matcher { reader, text_field, columns, indexed, weights, analyzer: analyzer.clone(), triggers })
    }

    /// Ranks entries for a normalised question.
    pub fn find(&self, normalized: &str) -> Ranking {
        let analysis = self.analyzer.analyze(normalized);
        let query_features = self.weights.features(normalized, &analysis);
        let mut ranking = Ranking::default();
        if let Some((_, entry)) = self.triggers.iter().find(|(t, _)| contains_phrase(normalized, t)) {
            ranking.candidates.push(Candidate { entry: *entry, score: 1.0 });
            ranking.triggered = true;
        }
        let mut best: Vec<Candidate> = Vec::new();
        for position in self.retrieve(normalized) {
            let indexed = &self.indexed[position];
            let score = similarity::score(&query_features, &indexed.features);
            match best.iter_mut().find(|c| c.entry == indexed.entry) {
                Some(candidate) => candidate.score = candidate.score.max(score),
                None => best.push(Candidate { entry: indexed.entry, score }),
            }
        }
        best.sort_by(|a, b| b.score.total_cmp(&a.score));
        for candidate in best {
            if ranking.candidates.len() == KEEP {
                break;
            }
            if !ranking.candidates.iter().any(|c| c.entry == candidate.entry) {
                ranking.candidates.push(candidate);
            }
        }
        ranking
    }

    /// Positions (into `indexed`) of the texts sharing most with the question.
    fn retrieve(&self, normalized: &str) -> Vec<usize> {
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
                let query: Box<dyn Query> = Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs));
                (Occur::Should, query)
            })
            .collect();
        let searcher = self.reader.searcher();
        let top = searcher
            .search(&BooleanQuery::new(clauses), &TopDocs::with_limit(RETRIEVE).order_by_score())
            .unwrap_or_default();
        top.into_iter()
            .filter_map(|(_, address)| self.columns.get(address.segment_ord as usize)?.first(address.doc_id))
            .map(|position| position as usize)
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
            .map(|(position, text)| Token { position, text, ..Token::default() })
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
