//! The staff's knowledge-base tools: `kb check` finds misplaced and repeated examples at their
//! line; `kb diff` shows what an edit changes for buyers.

use xiaoer::config::Thresholds;
use xiaoer::engine::Engine;
use xiaoer::eval::parse_cases;

use crate::support::{engine, repo_path, run_xiaoer, KnowledgeCopy};

#[test]
fn an_example_moved_to_the_wrong_entry_is_reported_at_its_line() {
    let copy = KnowledgeCopy::new("moved-example");
    copy.edit("invoice.toml", "  \"能开发票吗\",\n", "");
    copy.edit(
        "shipping.toml",
        "  \"发什么快递\",\n",
        "  \"发什么快递\",\n  \"能开发票吗\",\n",
    );
    let line = copy.line_of("shipping.toml", "  \"能开发票吗\",");
    let (stdout, _, ok) = run_xiaoer(&["kb", "check", copy.dir.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    let expect = format!(
        "{}:{line}: example \"能开发票吗\" of entry courier is answered as invoice (开发票)",
        copy.path("shipping.toml")
    );
    assert!(stdout.contains(&expect), "{stdout}");
    assert!(stdout.contains("1 problem(s) found"), "{stdout}");
}

#[test]
fn a_repeated_example_is_reported_at_the_repeat() {
    let copy = KnowledgeCopy::new("repeated-example");
    copy.edit(
        "invoice.toml",
        "  \"能开发票吗\",\n",
        "  \"能开发票吗\",\n  \"能開發票嗎\",\n",
    );
    let first = copy.line_of("invoice.toml", "  \"能开发票吗\",");
    let repeat = copy.line_of("invoice.toml", "  \"能開發票嗎\",");
    let (stdout, _, ok) = run_xiaoer(&["kb", "check", copy.dir.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    let expect = format!(
        "{}:{repeat}: example \"能開發票嗎\" of entry invoice repeats \"能开发票吗\" (line {first})",
        copy.path("invoice.toml")
    );
    assert!(stdout.contains(&expect), "{stdout}");
}

#[test]
fn an_entry_of_near_copies_is_told_to_vary_its_examples() {
    let copy = KnowledgeCopy::new("near-copies");
    std::fs::write(
        copy.dir.join("wool_care.toml"),
        r#"[[entry]]
id = "wool_care"
title = "羊毛护理"
title_en = "Wool care"
policy = "Wool is washed by hand in cold water or dry-cleaned."
source = "test"
examples = [
  "请问羊毛围巾能不能直接放进洗衣机里洗",
  "请问羊绒围巾能不能直接放进洗衣机里洗",
  "请问羊毛围脖能不能直接放进洗衣机里洗",
  "请问羊毛围巾能不能直接扔进洗衣机里洗",
  "请问羊毛围巾能不能直接放到洗衣机里洗",
  "请问羊毛围巾能不能直接放进洗衣机里面洗",
  "can i machine wash the wool scarf",
  "how do i wash the scarf",
]
answer = """您好，羊毛围巾建议您用冷水手洗或干洗，平铺晾干，这样能保持柔软。"""
answer_en = """We recommend washing the wool scarf by hand in cold water or dry cleaning it, then drying it flat to keep it soft."""
"#,
    )
    .unwrap();
    let (stdout, _, ok) = run_xiaoer(&["kb", "check", copy.dir.to_str().unwrap()]);
    assert!(!ok, "{stdout}");
    let expect = format!(
        "{}:2: entry \"wool_care\": 6 of its 8 examples are near-copies of another — too alike",
        copy.path("wool_care.toml")
    );
    assert!(stdout.contains(&expect), "{stdout}");
}

#[test]
fn kb_diff_lists_the_questions_an_edit_changes() {
    let copy = KnowledgeCopy::new("diff-edit");
    copy.edit("invoice.toml", "邮费由我们承担", "邮费由本店承担");
    copy.edit("returns.toml", "  \"换个码\",\n", "");
    let old = repo_path("knowledge");
    let (stdout, stderr, ok) = run_xiaoer(&[
        "kb",
        "diff",
        old.to_str().unwrap(),
        copy.dir.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("~ invoice: answer\n"), "{stdout}");
    assert!(stdout.contains("~ exchange: examples (+0 −1)"), "{stdout}");

    let edited = Engine::load(&copy.dir, Thresholds::default()).unwrap();
    let text = std::fs::read_to_string(repo_path("tests/data/eval.jsonl")).unwrap();
    let (cases, _) = parse_cases(&text);
    // Only tuning questions are compared: the held-out split is never shown to an editor.
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| c.split.as_deref() != Some("heldout"))
        .collect();
    assert!(
        cases.len() < text.lines().count(),
        "the set has held-out questions"
    );
    let mut n_invoice = 0;
    let mut n_changed = 0;
    for case in &cases {
        let (before, after) = (engine().ask(&case.text), edited.ask(&case.text));
        let listed = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  {:?}  old: ", case.text)));
        let changed = (before.action, &before.topic, &before.reply)
            != (after.action, &after.topic, &after.reply);
        assert_eq!(listed.is_some(), changed, "{}\n{stdout}", case.text);
        n_changed += usize::from(changed);
        if before
            .topic
            .as_ref()
            .is_some_and(|t| t.as_str() == "invoice")
        {
            n_invoice += 1;
            let line = listed.expect("every invoice answer changed");
            assert!(line.contains("old: answer invoice"), "{line}");
            assert!(line.ends_with("(reply text changed)"), "{line}");
        }
    }
    assert!(n_invoice > 0);
    let summary = format!("{} tuning questions, {n_changed} changed", cases.len());
    assert!(stdout.contains(&summary), "{stdout}");
}

#[test]
fn kb_diff_refuses_an_invalid_knowledge_base_with_its_problems() {
    let copy = KnowledgeCopy::new("diff-invalid");
    copy.edit("invoice.toml", "id = \"invoice\"", "id = \"Invoice\"");
    let old = repo_path("knowledge");
    let (stdout, _, ok) = run_xiaoer(&[
        "kb",
        "diff",
        old.to_str().unwrap(),
        copy.dir.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    let expect = format!(
        "{}:10: id \"Invoice\" must be lower-case",
        copy.path("invoice.toml")
    );
    assert!(stdout.contains(&expect), "{stdout}");
    assert!(!stdout.contains("questions"), "{stdout}");
}

/// A copy of `dialogs/` in a temporary folder.
fn dialogs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir(repo_path("dialogs")).unwrap() {
        let path = file.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn edit(path: &std::path::Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} is not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn kb_check_reports_flows_that_reference_unknown_entries_or_steps_and_bad_prompts() {
    let dialogs = dialogs_copy();
    let damaged = dialogs.path().join("damaged_item.toml");
    edit(
        &damaged,
        "starts = [\"damaged_item\"]",
        "starts = [\"broken_item\"]",
    );
    edit(&damaged, "next = \"photos\"", "next = \"pictures\"");
    edit(
        &damaged,
        "请您先提供一下订单号，我们马上为您核实。",
        "你先提供一下订单号。",
    );
    // The buttons of the remedy step come from its numbered lines: one is missing.
    edit(&damaged, "\\n3. 退货退款\"", "\"");
    let kb = repo_path("knowledge");
    let (stdout, _, ok) = run_xiaoer(&[
        "kb",
        "check",
        kb.to_str().unwrap(),
        "--dialogs",
        dialogs.path().to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}");
    let file = damaged.display().to_string();
    for expect in [
        format!("{file}:1: flow \"damaged_item\" starts from entry \"broken_item\", which is not in the knowledge base"),
        "step \"order\" goes to \"pictures\", which is neither a step nor an end of this flow".to_string(),
        "step \"order\" prompt: ".to_string(),
        "step \"remedy\": prompt lists 2 numbered options (\"1. …\" lines, shown as buttons) for 3 [[step.choice]]".to_string(),
        "entry \"damaged_item\" is a dialog entry but no flow in".to_string(),
    ] {
        assert!(stdout.contains(&expect), "missing {expect:?} in:\n{stdout}");
    }
    assert!(stdout.contains("(address_as_nin)"), "{stdout}");
}

#[test]
fn kb_check_reports_a_malformed_flow_file_at_its_line_and_a_missing_required_flow() {
    let dialogs = dialogs_copy();
    let path = dialogs.path().join("late_delivery.toml");
    edit(
        &path,
        "collect = \"order_number\"",
        "collect = \"order_number\"\nwait = 3",
    );
    std::fs::remove_file(dialogs.path().join("complaint.toml")).unwrap();
    let kb = repo_path("knowledge");
    let (stdout, _, ok) = run_xiaoer(&[
        "kb",
        "check",
        kb.to_str().unwrap(),
        "--dialogs",
        dialogs.path().to_str().unwrap(),
    ]);
    assert!(!ok);
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l == "wait = 3")
        .unwrap()
        + 1;
    assert!(
        stdout.contains(&format!("{}:{line}: unknown field `wait`", path.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains("required flow \"complaint\" is missing"),
        "{stdout}"
    );
}

#[test]
fn the_shops_values_are_stated_once_and_every_answer_follows_an_edit() {
    let copy = KnowledgeCopy::new("shop-values");
    copy.edit(
        "shop.toml",
        r#"shifts = ["08:30-17:30", "17:30-23:00"]"#,
        r#"shifts = ["09:00-12:00", "13:00-18:00"]"#,
    );
    copy.edit(
        "shop.toml",
        r#"dispatch_cutoff = "16:00""#,
        r#"dispatch_cutoff = "14:30""#,
    );
    let edited = Engine::load(&copy.dir, Thresholds::default()).unwrap();
    let hours = edited.ask("客服几点上班").reply;
    assert!(hours.contains("09:00–12:00、13:00–18:00"), "{hours}");
    assert!(!hours.contains("08:30"), "{hours}");
    let dispatch = edited.ask("今天下单什么时候发货").reply;
    assert!(
        dispatch.contains("14:30") && !dispatch.contains("16:00"),
        "{dispatch}"
    );
    let contact = edited.ask("how can I call you").reply;
    assert!(contact.contains("09:00–12:00, 13:00–18:00"), "{contact}");

    copy.edit("shipping.toml", "{shop.dispatch_cutoff}", "{shop.cut_off}");
    let (_, diagnostics) = xiaoer::knowledge::load_dir(&copy.dir);
    let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        listing
            .iter()
            .any(|d| d.contains("shipping.toml:") && d.contains("{shop.cut_off}")),
        "{listing:#?}"
    );
}
