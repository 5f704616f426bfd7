//! Fits the matcher's logistic model and the decision thresholds on the TUNING split of an
//! evaluation set, and prints them for `src/matcher.rs` and `src/config.rs`.
//! The held-out split is never read here.
//!
//!     cargo run --release --example fit -- tests/data/eval.jsonl

use std::path::Path;

use xiaoer::config::{Settings, Thresholds};
use xiaoer::engine::{decide, Engine, Verdict};
use xiaoer::eval::{parse_cases, Case};
use xiaoer::matcher::{probabilities, utility, Ranking, FEATURES};

fn main() -> anyhow::Result<()> {
    let file = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tests/data/eval.jsonl".into());
    let (cases, problems) = parse_cases(&std::fs::read_to_string(&file)?);
    anyhow::ensure!(problems.is_empty(), "{problems:?}");
    let tune: Vec<Case> = cases
        .into_iter()
        .filter(|c| c.split.as_deref() == Some("tune"))
        .collect();
    let settings = Settings::default();
    let engine = Engine::load(Path::new(&settings.kb), settings.thresholds)?;
    let rankings: Vec<Ranking> = tune.iter().map(|c| engine.rank(&c.text)).collect();

    // 5-fold cross-validation inside the tuning split: each question is scored by a model
    // fitted without it. The thresholds are chosen on these out-of-fold scores, so they
    // suit questions the model has not seen; the model itself is then fitted on all of tune.
    let mut out_of_fold: Vec<(Case, Ranking)> = Vec::new();
    for fold in 0..5 {
        let (train, test): (Vec<usize>, Vec<usize>) = (0..tune.len()).partition(|i| i % 5 != fold);
        let train_cases: Vec<Case> = train.iter().map(|&i| tune[i].clone()).collect();
        let train_rankings: Vec<Ranking> = train.iter().map(|&i| rankings[i].clone()).collect();
        let (none, weights) = fit_model(&train_cases, &train_rankings, &engine);
        let test_rankings: Vec<Ranking> = test.iter().map(|&i| rankings[i].clone()).collect();
        for (i, ranking) in test.iter().zip(rescore(&test_rankings, none, &weights)) {
            out_of_fold.push((tune[*i].clone(), ranking));
        }
    }
    let (oof_cases, oof_rankings): (Vec<Case>, Vec<Ranking>) = out_of_fold.into_iter().unzip();
    let thresholds = choose_thresholds(&oof_cases, &oof_rankings, &engine);
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let c = counts(&oof_cases, &oof_rankings, &engine, &thresholds);
    println!(
        "5-fold CV within tune (out-of-fold): precision {:.3} coverage {:.3} handoff recall {:.3}",
        ratio(c[1], c[0]),
        ratio(c[3], c[2]),
        ratio(c[5], c[4])
    );
    let (none, weights) = fit_model(&tune, &rankings, &engine);
    println!("MODEL_NONE: f32 = {none:.3};\nMODEL_WEIGHTS: [f32; FEATURES] = {weights:.3?};");
    println!("{thresholds:?}");
    let c = counts(
        &tune,
        &rescore(&rankings, none, &weights),
        &engine,
        &thresholds,
    );
    println!(
        "tune (fitted on itself): precision {:.3} coverage {:.3} handoff recall {:.3}",
        ratio(c[1], c[0]),
        ratio(c[3], c[2]),
        ratio(c[5], c[4])
    );
    Ok(())
}

fn fit_model(tune: &[Case], rankings: &[Ranking], engine: &Engine) -> (f32, [f32; FEATURES]) {
    let entries = &engine.knowledge_base().entries;
    // One choice set per question: the candidates' features and which one is right (None:
    // none of them — a question for a person, or one whose topic was never retrieved).
    let mut sets: Vec<(Vec<[f32; FEATURES]>, Option<usize>)> = Vec::new();
    for (case, ranking) in tune.iter().zip(rankings) {
        if ranking.triggered {
            continue;
        }
        let features = ranking
            .candidates
            .iter()
            .map(|c| c.evidence.features())
            .collect();
        let right = ranking
            .candidates
            .iter()
            .position(|c| case.accepts(entries[c.entry].id.as_str()));
        sets.push((features, right));
    }
    fit_conditional_logit(&sets)
}

/// The thresholds with the largest worst-case relative slack over the floors (precision 0.97,
/// coverage 0.92, handoff recall 0.95) on already scored rankings.
fn choose_thresholds(cases: &[Case], rescored: &[Ranking], engine: &Engine) -> Thresholds {
    let mut best: Option<(f64, Thresholds)> = None;
    for answer in (20..=95).step_by(5).map(|x| x as f32 / 100.0) {
        for clarify in (5..=60).step_by(5).map(|x| x as f32 / 100.0) {
            for margin in [0.0, 0.05, 0.1, 0.15, 0.2, 0.3] {
                let thresholds = Thresholds {
                    answer,
                    clarify,
                    margin,
                };
                let c = counts(cases, rescored, engine, &thresholds);
                let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
                // Each figure's distance above its floor, as a share of the room above it.
                let slack = ((ratio(c[1], c[0]) - 0.97) / 0.03)
                    .min((ratio(c[3], c[2]) - 0.92) / 0.08)
                    .min((ratio(c[5], c[4]) - 0.95) / 0.05);
                // On a tie, the wider margin: two close topics are better offered than guessed.
                let better =
                    |b: &(f64, Thresholds)| slack > b.0 || (slack == b.0 && margin > b.1.margin);
                if best.as_ref().is_none_or(better) {
                    best = Some((slack, thresholds));
                }
            }
        }
    }
    best.expect("grid is not empty").1
}

/// Re-scores every ranking with a model, best first again.
fn rescore(rankings: &[Ranking], none: f32, weights: &[f32; FEATURES]) -> Vec<Ranking> {
    rankings
        .iter()
        .cloned()
        .map(|mut ranking| {
            if !ranking.triggered {
                let utilities: Vec<f32> = ranking
                    .candidates
                    .iter()
                    .map(|c| utility(&c.evidence.features(), weights))
                    .collect();
                for (c, p) in ranking
                    .candidates
                    .iter_mut()
                    .zip(probabilities(&utilities, none))
                {
                    c.score = p;
                }
                ranking
                    .candidates
                    .sort_by(|a, b| b.score.total_cmp(&a.score));
            }
            ranking
        })
        .collect()
}

/// Counts under `thresholds`: answered, answered correctly, in scope, in scope answered,
/// handoff expected, handed off.
fn counts(
    cases: &[Case],
    rankings: &[Ranking],
    engine: &Engine,
    thresholds: &Thresholds,
) -> [usize; 6] {
    let knowledge_base = engine.knowledge_base();
    let (mut answered, mut correct, mut in_scope, mut in_scope_answered, mut handoffs, mut handed) =
        (0, 0, 0, 0, 0, 0);
    for (case, ranking) in cases.iter().zip(rankings) {
        let verdict = decide(ranking, knowledge_base, thresholds);
        let answered_entry = match verdict {
            Verdict::Answer(entry)
                if knowledge_base.entries[entry].action != xiaoer::knowledge::Action::Handoff =>
            {
                Some(entry)
            }
            _ => None,
        };
        let handed_off = matches!(verdict, Verdict::Handoff)
            || matches!(verdict, Verdict::Answer(e) if knowledge_base.entries[e].action == xiaoer::knowledge::Action::Handoff);
        if let Some(entry) = answered_entry {
            answered += 1;
            correct += case.accepts(knowledge_base.entries[entry].id.as_str()) as usize;
        }
        if case.expects_handoff() {
            handoffs += 1;
            handed += handed_off as usize;
        } else {
            in_scope += 1;
            in_scope_answered += answered_entry.is_some() as usize;
        }
    }
    [
        answered,
        correct,
        in_scope,
        in_scope_answered,
        handoffs,
        handed,
    ]
}

/// Maximum likelihood by gradient descent, with a little L2 to keep weights sane.
fn fit_conditional_logit(sets: &[(Vec<[f32; FEATURES]>, Option<usize>)]) -> (f32, [f32; FEATURES]) {
    let (mut none, mut weights) = (0.0f32, [0.0f32; FEATURES]);
    let n = sets.len().max(1) as f32;
    for _ in 0..20_000 {
        let (mut grad_none, mut grad) = (0.0f32, [0.0f32; FEATURES]);
        for (features, right) in sets {
            let utilities: Vec<f32> = features.iter().map(|x| utility(x, &weights)).collect();
            let p = probabilities(&utilities, none);
            let p_none = 1.0 - p.iter().sum::<f32>();
            grad_none += p_none - right.is_none() as u8 as f32;
            for (j, x) in features.iter().enumerate() {
                let target = (Some(j) == *right) as u8 as f32;
                for i in 0..FEATURES {
                    grad[i] += (p[j] - target) * x[i];
                }
            }
        }
        none -= 0.5 * grad_none / n;
        for i in 0..FEATURES {
            weights[i] -= 0.5 * (grad[i] / n + 1e-3 * weights[i]);
        }
    }
    (none, weights)
}
