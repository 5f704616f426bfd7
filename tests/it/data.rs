//! The shipped knowledge base is valid and complete.

use xiaoer::knowledge::{self, Action, REQUIRED_IDS};

use crate::support::repo_path;

#[test]
fn knowledge_base_has_no_problems() {
    let (_, diagnostics) = knowledge::load_dir(&repo_path("knowledge"));
    let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(diagnostics.is_empty(), "{}", listing.join("\n"));
}

#[test]
fn every_required_topic_has_examples_in_three_scripts_and_both_answers() {
    let (knowledge_base, _) = knowledge::load_dir(&repo_path("knowledge"));
    for id in REQUIRED_IDS {
        let entry = knowledge_base
            .entry(id)
            .unwrap_or_else(|| panic!("{id} missing"));
        let english = entry.examples.iter().filter(|e| e.is_ascii()).count();
        assert!(
            entry.examples.len() >= 8,
            "{id}: {} examples",
            entry.examples.len()
        );
        assert!(english >= 2, "{id}: {english} English examples");
        assert!(
            !entry.answer.is_empty() && !entry.answer_en.is_empty(),
            "{id}"
        );
    }
}

#[test]
fn person_requests_and_complaints_are_handoff_entries_with_triggers() {
    let (knowledge_base, _) = knowledge::load_dir(&repo_path("knowledge"));
    for id in ["human", "complaint"] {
        let entry = knowledge_base
            .entry(id)
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(entry.action, Action::Handoff, "{id}");
        assert!(!entry.triggers.is_empty(), "{id}");
    }
}

#[test]
fn after_sales_topics_start_dialogs() {
    let (knowledge_base, _) = knowledge::load_dir(&repo_path("knowledge"));
    for id in [
        "damaged_item",
        "missing_item",
        "wrong_item",
        "quality_issue",
        "not_as_described",
        "late_delivery",
    ] {
        assert_eq!(
            knowledge_base.entry(id).unwrap().action,
            Action::Dialog,
            "{id}"
        );
    }
}

#[test]
fn broken_knowledge_files_are_named_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("xiaoer-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("binary.toml"), [0u8, 159, 146, 150, 0, 1]).unwrap();
    std::fs::write(dir.join("latin1.toml"), b"[[entry]]\nid = \"caf\xe9\"\n").unwrap();
    std::fs::write(
        dir.join("unknown_field.toml"),
        "[[entry]]\nid = \"x\"\ncolour = 1\n",
    )
    .unwrap();
    let (_, diagnostics) = knowledge::load_dir(&dir);
    let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    let find =
        |file: &str, text: &str| listing.iter().any(|d| d.contains(file) && d.contains(text));
    assert!(find("binary.toml", "binary"), "{listing:#?}");
    assert!(find("latin1.toml", "not UTF-8"), "{listing:#?}");
    assert!(find("unknown_field.toml", "unknown field"), "{listing:#?}");
    assert!(
        find("", "required entry \"human\" is missing"),
        "{listing:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
