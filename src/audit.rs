//! Checks of a knowledge base that need the built matcher: example questions the matcher puts
//! on another entry, and examples too alike to teach it anything. `xiaoer kb check` runs them
//! once `knowledge::load_dir` found no problem (an invalid knowledge base can't be built).
//!
//! Pure: reads an `Engine`, returns `Diagnostic`s at the example's own line. Never reads files.

use std::collections::HashMap;

use crate::engine::{self, Engine, Verdict};
use crate::knowledge::{Diagnostic, Entry};

/// Confidence at or above which another entry's claim on an example is a conflict. On the
/// held-out evaluation questions, answers given at 0.8 or more were right 149 times of 149
/// (README "Evaluation"): an example claimed that firmly reads like the other entry's. Below
/// it, an example the rest of the knowledge base would put elsewhere is usually a hard
/// phrasing its entry needs ("how much is shipping" under free_shipping, which `price`
/// would otherwise take), and removing it would send such buyers astray.
pub const CONFLICT_CONFIDENCE: f32 = 0.8;

/// Normalised-Levenshtein similarity at or above which two examples are near-copies.
pub const NEAR_COPY_SIMILARITY: f64 = 0.9;

/// Every problem the matcher shows in `engine`'s knowledge base.
pub fn check(engine: &Engine) -> Vec<Diagnostic> {
    let mut diagnostics = conflicts(engine);
    diagnostics.extend(alike_examples(engine));
    diagnostics
}

/// Examples another entry answers.
///
/// Asking the engine an example as is would show almost nothing: the question is then one of
/// the entry's own indexed texts, and an exact hit always wins, so only a copy of it in
/// another entry (an example, keyword or title: the earlier entry takes it) or another
/// entry's trigger phrase could win. Ignoring only the exact hit shows little more, as the
/// indexed copy still gives its entry full similarity: with the first example of each entry
/// moved to the next entry, that found 24 of the 42 moves. So each example is ranked leaving
/// itself out (`Engine::rank_leaving_out`): what the rest of the knowledge base makes of it,
/// which finds all 42. A real leave-one-out, one index per example, agrees closely but takes
/// a minute on the shipped knowledge base; this takes a fraction of a second.
///
/// A clarify or handoff (no topic) is no conflict: the matcher then claims nothing.
fn conflicts(engine: &Engine) -> Vec<Diagnostic> {
    // One query per example: at 10,000 entries that is a minute on one core, so the entries
    // are shared among the cores (each chunk's diagnostics stay in file order).
    let entries = &engine.knowledge_base().entries;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..entries.len())
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(entries.len()))
                        .flat_map(|entry| conflicts_of(engine, entry))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a conflict check panicked"))
            .collect()
    })
}

/// The examples of entry `entry_index` another entry answers.
fn conflicts_of(engine: &Engine, entry_index: usize) -> Vec<Diagnostic> {
    let knowledge_base = engine.knowledge_base();
    let thresholds = engine.thresholds();
    let entry = &knowledge_base.entries[entry_index];
    let mut diagnostics = Vec::new();
    for (example_index, example) in entry.examples.iter().enumerate() {
        let ranking = engine.rank_leaving_out(example, entry_index);
        let Verdict::Answer(other) = engine::decide(&ranking, knowledge_base, thresholds) else {
            continue;
        };
        if other == entry_index || engine::confidence(&ranking, thresholds) < CONFLICT_CONFIDENCE {
            continue;
        }
        let other = &knowledge_base.entries[other];
        diagnostics.push(Diagnostic {
            location: entry.example_location(example_index),
            message: format!(
                "example \"{example}\" of entry {} is answered as {} ({}) — reword it, or move it to {}",
                entry.id, other.id, other.title, other.id
            ),
        });
    }
    diagnostics
}

/// Examples that say the same thing: each repeat of an earlier example once normalised, and
/// one diagnostic for an entry where most examples are near-copies of a sibling.
fn alike_examples(engine: &Engine) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for entry in &engine.knowledge_base().entries {
        let normalized: Vec<String> = entry
            .examples
            .iter()
            .map(|e| engine.normalizer().normalize(e))
            .collect();
        diagnostics.extend(repeats(entry, &normalized));
        let n_near_copies = (0..normalized.len())
            .filter(|&i| {
                (0..normalized.len()).any(|j| {
                    j != i
                        && strsim::normalized_levenshtein(&normalized[i], &normalized[j])
                            >= NEAR_COPY_SIMILARITY
                })
            })
            .count();
        if n_near_copies * 2 > normalized.len() {
            diagnostics.push(Diagnostic {
                location: entry.location.clone(),
                message: format!(
                    "entry \"{}\": {n_near_copies} of its {} examples are near-copies of another — too alike to teach the matcher the ways buyers phrase it (vary them: simplified, traditional, English, typos, colloquial)",
                    entry.id,
                    normalized.len()
                ),
            });
        }
    }
    diagnostics
}

/// Each example that normalises to the same text as an earlier one of its entry.
fn repeats(entry: &Entry, normalized: &[String]) -> Vec<Diagnostic> {
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut diagnostics = Vec::new();
    for (index, text) in normalized.iter().enumerate() {
        match first_seen.get(text.as_str()) {
            Some(&first) => diagnostics.push(Diagnostic {
                location: entry.example_location(index),
                message: format!(
                    "example \"{}\" of entry {} repeats \"{}\" (line {}) once normalised — remove it or reword it",
                    entry.examples[index],
                    entry.id,
                    entry.examples[first],
                    entry.example_location(first).line
                ),
            }),
            None => {
                first_seen.insert(text, index);
            }
        }
    }
    diagnostics
}
