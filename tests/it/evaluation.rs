//! The acceptance floors of issue 3, on the held-out split of `tests/data/eval.jsonl`
//! (the tuning split chose the model and thresholds; the held-out split never did).

use xiaoer::eval::{parse_cases, Report};

use crate::support::{engine, repo_path};

fn report(split: &str) -> Report {
    let text = std::fs::read_to_string(repo_path("tests/data/eval.jsonl")).unwrap();
    let (cases, problems) = parse_cases(&text);
    assert!(problems.is_empty(), "{problems:?}");
    let mut report = Report::default();
    for case in cases.iter().filter(|c| c.split.as_deref() == Some(split)) {
        report.add(case, &engine().ask(&case.text));
    }
    report
}

#[test]
fn evaluation_set_is_big_enough_and_split() {
    let text = std::fs::read_to_string(repo_path("tests/data/eval.jsonl")).unwrap();
    let (cases, _) = parse_cases(&text);
    let known = engine().knowledge_base();
    assert!(cases.len() >= 400);
    assert!(cases.iter().filter(|c| c.expects_handoff()).count() >= 80);
    for case in &cases {
        assert!(
            matches!(case.split.as_deref(), Some("tune" | "heldout")),
            "{}",
            case.text
        );
        for id in std::iter::once(&case.expect).chain(&case.accept) {
            assert!(
                id == "handoff" || known.entry(id).is_some(),
                "unknown topic {id}"
            );
        }
    }
}

#[test]
fn held_out_questions_meet_the_floors() {
    let report = report("heldout");
    let misses: Vec<String> = report
        .misses
        .iter()
        .map(|m| format!("{} → {:?} {:?}", m.text, m.action, m.topic))
        .collect();
    let summary = format!(
        "precision {:.3} coverage {:.3} handoff recall {:.3}\n{}",
        report.precision(),
        report.coverage(),
        report.handoff_recall(),
        misses.join("\n")
    );
    assert!(report.precision() >= 0.97, "{summary}");
    assert!(report.coverage() >= 0.92, "{summary}");
    assert!(report.handoff_recall() >= 0.95, "{summary}");
}
