//! Every shop's evaluation set: trustworthy splits (non-empty, disjoint from each other and
//! from the knowledge examples once read as the matcher reads them, labels the shop knows) and
//! the held-out floors. The tuning split chose the model and thresholds; the held-out split
//! never did, and its misses are never printed (only its figures).

use std::collections::HashMap;
use std::path::PathBuf;

use xiaoer::config::Thresholds;
use xiaoer::engine::Engine;
use xiaoer::eval::{parse_cases, Case, Report};

use crate::support::{engine, repo_path};

/// A shop the repository holds: its knowledge base and its evaluation set.
struct Shop {
    name: String,
    knowledge: PathBuf,
    eval: PathBuf,
}

/// The sample shop and every fixture shop under `tests/shops/`.
fn shops() -> Vec<Shop> {
    let mut shops = vec![Shop {
        name: "sample".into(),
        knowledge: repo_path("knowledge"),
        eval: repo_path("tests/data/eval.jsonl"),
    }];
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo_path("tests/shops"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    fixtures.sort();
    for dir in fixtures
        .into_iter()
        .filter(|d| d.join("eval.jsonl").exists())
    {
        shops.push(Shop {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            knowledge: dir.join("knowledge"),
            eval: dir.join("eval.jsonl"),
        });
    }
    shops
}

fn cases(shop: &Shop) -> Vec<Case> {
    let (cases, problems) = parse_cases(&std::fs::read_to_string(&shop.eval).unwrap());
    assert!(problems.is_empty(), "{}: {problems:?}", shop.name);
    cases
}

fn shop_engine(shop: &Shop) -> Engine {
    Engine::load(&shop.knowledge, Thresholds::default()).expect("the shop's knowledge loads")
}

#[test]
fn there_are_fixture_shops_of_other_trades() {
    assert!(shops().len() >= 3, "the sample shop and two others");
}

#[test]
fn every_shop_has_both_splits_with_handoffs_and_known_topics() {
    for shop in shops() {
        let cases = cases(&shop);
        let engine = shop_engine(&shop);
        for split in ["tune", "heldout"] {
            let in_split: Vec<&Case> = cases
                .iter()
                .filter(|c| c.split.as_deref() == Some(split))
                .collect();
            assert!(in_split.len() >= 100, "{} {split}: too few", shop.name);
            assert!(
                in_split.iter().filter(|c| c.expects_handoff()).count() >= 20,
                "{} {split}: too few handoffs",
                shop.name
            );
        }
        for case in &cases {
            assert!(
                matches!(case.split.as_deref(), Some("tune" | "heldout")),
                "{}: a question without a split",
                shop.name
            );
            for id in std::iter::once(&case.expect).chain(&case.accept) {
                assert!(
                    id == "handoff" || engine.knowledge_base().entry(id).is_some(),
                    "{}: unknown topic {id}",
                    shop.name
                );
            }
        }
    }
}

#[test]
fn held_out_questions_are_neither_tuning_questions_nor_knowledge_examples() {
    for shop in shops() {
        let engine = shop_engine(&shop);
        let examples: HashMap<String, &str> = engine
            .knowledge_base()
            .entries
            .iter()
            .flat_map(|e| e.examples.iter())
            .map(|x| (engine.matching_form(x), x.as_str()))
            .collect();
        let cases = cases(&shop);
        let tune: HashMap<String, &str> = cases
            .iter()
            .filter(|c| c.split.as_deref() == Some("tune"))
            .map(|c| (engine.matching_form(&c.text), c.text.as_str()))
            .collect();
        // Counted, not listed: the held-out texts stay out of test logs.
        let heldout = cases
            .iter()
            .filter(|c| c.split.as_deref() == Some("heldout"));
        let (mut as_tuning, mut as_example) = (0, 0);
        for case in heldout {
            let form = engine.matching_form(&case.text);
            as_tuning += usize::from(tune.contains_key(&form));
            as_example += usize::from(examples.contains_key(&form));
        }
        assert_eq!(
            (as_tuning, as_example),
            (0, 0),
            "{}: held-out questions that read as (a tuning question, a knowledge example)",
            shop.name
        );
        let tune_as_example: Vec<&&str> = tune
            .iter()
            .filter(|(form, _)| examples.contains_key(*form))
            .map(|(_, text)| text)
            .collect();
        assert!(
            tune_as_example.is_empty(),
            "{}: tuning questions that read as a knowledge example: {tune_as_example:?}",
            shop.name
        );
    }
}

/// The held-out figures of one shop, printed without the questions.
fn held_out(shop: &Shop) -> Report {
    let own = (shop.name != "sample").then(|| shop_engine(shop));
    let engine = own.as_ref().unwrap_or_else(|| engine());
    let mut report = Report::default();
    for case in cases(shop)
        .iter()
        .filter(|c| c.split.as_deref() == Some("heldout"))
    {
        report.add(case, &engine.ask(&case.text));
    }
    report
}

/// Floors each shop's held-out split must keep: (precision, coverage, handoff recall,
/// answered or clarified with the right topic). Issue 14's targets are 0.97 / 0.92 / 0.95;
/// where a shop is below them the floor is what it reaches today, so a change that loses
/// ground fails here, and README's table says what is left.
fn floors(shop: &str) -> (f64, f64, f64, f64) {
    match shop {
        // Measured 0.991 / 0.956 / 1.000 / 0.969: issue 14's targets.
        "sample" => (0.97, 0.92, 0.95, 0.95),
        // Measured 0.941 / 0.802 / 0.967 / 0.792.
        "cosmetics" => (0.92, 0.78, 0.95, 0.77),
        // Measured 0.907 / 0.759 / 0.931 / 0.750.
        "fresh" => (0.89, 0.74, 0.92, 0.73),
        // A shop added without floors of its own must still be a usable shop.
        _ => (0.88, 0.70, 0.90, 0.70),
    }
}

#[test]
fn held_out_questions_meet_the_floors() {
    for shop in shops() {
        let report = held_out(&shop);
        let summary = format!(
            "{}: {} questions, precision {:.3} coverage {:.3} handoff recall {:.3} answered or clarified right {:.3}",
            shop.name,
            report.cases,
            report.precision(),
            report.coverage(),
            report.handoff_recall(),
            report.answered_or_clarified_right()
        );
        let (precision, coverage, handoff_recall, helped) = floors(&shop.name);
        // NaN (no questions) fails every comparison.
        assert!(report.precision() >= precision, "{summary}");
        assert!(report.coverage() >= coverage, "{summary}");
        assert!(report.handoff_recall() >= handoff_recall, "{summary}");
        assert!(report.answered_or_clarified_right() >= helped, "{summary}");
    }
}
