//! Every reply the code can send passes the phrasing check: entry answers, product answers
//! with every product's values filled in, clarify and handoff notices, bad-input replies,
//! conversation notices (anger, waiting, after hours) and every dialog flow's texts.

use xiaoer::engine::Decision;
use xiaoer::knowledge::{self, Entry};
use xiaoer::normalize::Lang;
use xiaoer::phrasing;
use xiaoer::reply;

use crate::support::{engine, repo_path};

#[track_caller]
fn assert_clean(what: &str, text: &str) {
    let violations = phrasing::check(&engine().knowledge_base().phrasing, text);
    let listing: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{what}: {text}\n{}",
        listing.join("\n")
    );
    assert!(
        !text.contains('{') && !text.contains('}'),
        "{what}: unfilled slot in {text}"
    );
}

#[test]
fn every_entry_answer_passes_in_both_languages() {
    for entry in &engine().knowledge_base().entries {
        assert_clean(&format!("{} zh", entry.id), &reply::answer(entry, Lang::Zh));
        assert_clean(&format!("{} en", entry.id), &reply::answer(entry, Lang::En));
    }
}

#[test]
fn every_product_answer_passes_for_every_product_and_variant() {
    let knowledge_base = engine().knowledge_base();
    let topics = [
        "dispatch_time",
        "stock_check",
        "restock",
        "free_shipping",
        "price",
        "material",
        "size_advice",
    ];
    for product in &knowledge_base.catalog.product {
        let mut questions = vec![String::new()];
        for color in &product.colors {
            questions.push(color.zh.clone());
            questions.push(color.en.clone());
            for size in &product.sizes {
                questions.push(format!("{}{}码", color.zh, size.to_lowercase()));
                questions.push(format!("{} {}", color.en, size.to_lowercase()));
            }
        }
        for topic in topics {
            for question in &questions {
                for lang in [Lang::Zh, Lang::En] {
                    if let Some(text) =
                        reply::product_answer(knowledge_base, topic, Some(product), question, lang)
                    {
                        assert_clean(&format!("{topic} {} {question:?}", product.id), &text);
                    }
                }
            }
        }
    }
}

#[test]
fn stock_across_the_catalog_passes_for_every_variant() {
    let knowledge_base = engine().knowledge_base();
    for product in &knowledge_base.catalog.product {
        for color in &product.colors {
            for size in &product.sizes {
                for (lang, question) in [
                    (Lang::Zh, format!("{}{}码", color.zh, size.to_lowercase())),
                    (Lang::En, format!("{} {}", color.en, size.to_lowercase())),
                ] {
                    if let Some(text) =
                        reply::product_answer(knowledge_base, "stock_check", None, &question, lang)
                    {
                        assert_clean(&question, &text);
                    }
                }
            }
        }
    }
}

#[test]
fn clarify_handoff_and_bad_input_replies_pass() {
    let knowledge_base = engine().knowledge_base();
    let entries: Vec<&Entry> = knowledge_base.entries.iter().collect();
    for lang in [Lang::Zh, Lang::En] {
        for chunk in entries.chunks(3) {
            assert_clean("clarify", &reply::clarify(knowledge_base, chunk, lang));
        }
        for name in [
            "handoff",
            "empty",
            "too_long",
            "angry",
            "repeated",
            "flow_stuck",
            "flow_left",
            "waiting_ack",
            "still_waiting",
            "handoff_cancelled",
            "attachment_received",
            "welcome",
            "message_kind_unsupported",
            "try_again",
        ] {
            assert_clean(name, &reply::template(knowledge_base, name, lang, &[]));
        }
        for open in ["08:30", "17:30"] {
            let notice = reply::template(
                knowledge_base,
                "after_hours",
                lang,
                &[("open", open.to_string())],
            );
            assert_clean("after_hours", &notice);
        }
    }
}

#[test]
fn every_dialog_prompt_reask_and_ending_passes_in_both_languages() {
    let knowledge_base = engine().knowledge_base();
    let (flows, diagnostics) = xiaoer::dialog::load_dir(&repo_path("dialogs"), knowledge_base);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(flows.flows.len(), xiaoer::dialog::REQUIRED_FLOWS.len());
    for flow in &flows.flows {
        for step in &flow.steps {
            for (field, template) in [("prompt", &step.prompt), ("reask", &step.reask)] {
                assert_clean(&format!("{} {} {field} zh", flow.id, step.id), &template.zh);
                assert_clean(&format!("{} {} {field} en", flow.id, step.id), &template.en);
            }
        }
        for end in &flow.ends {
            assert_clean(&format!("{} {} zh", flow.id, end.id), &end.say.zh);
            assert_clean(&format!("{} {} en", flow.id, end.id), &end.say.en);
        }
    }
}

#[test]
fn every_reply_to_the_evaluation_questions_passes() {
    let text = std::fs::read_to_string(repo_path("tests/data/eval.jsonl")).unwrap();
    let (cases, _) = xiaoer::eval::parse_cases(&text);
    for case in cases {
        let reply = engine().ask(&case.text);
        assert_clean(&case.text, &reply.reply);
    }
}

#[test]
fn a_reply_that_would_break_a_rule_is_replaced_by_the_handoff_notice() {
    // A catalog value a staff member typed carelessly: the template is fine, the value is not.
    let (mut knowledge_base, diagnostics) = knowledge::load_dir(&repo_path("knowledge"));
    assert!(diagnostics.is_empty());
    let cup = knowledge_base
        .catalog
        .product
        .iter_mut()
        .find(|p| p.name == "保温杯")
        .unwrap();
    cup.material = "不锈钢，你放心".to_string();
    let engine =
        xiaoer::engine::Engine::build(knowledge_base, xiaoer::config::Thresholds::default())
            .unwrap();
    let reply = engine.ask("保温杯是什么材质");
    assert_eq!(reply.action, Decision::Handoff, "{reply:#?}");
    assert!(!reply.reply.contains("你放心"));
    assert_eq!(
        reply.reply,
        reply::template(engine.knowledge_base(), "handoff", Lang::Zh, &[])
    );
}

#[test]
fn a_knowledge_base_with_a_violating_answer_is_rejected_with_the_rule() {
    let dir = std::env::temp_dir().join(format!("xiaoer-phrasing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in std::fs::read_dir(repo_path("knowledge")).unwrap() {
        let path = file.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let invoice = std::fs::read_to_string(dir.join("invoice.toml")).unwrap();
    std::fs::write(
        dir.join("invoice.toml"),
        invoice.replacen("本店所有订单", "你的订单我们不开", 1),
    )
    .unwrap();
    let (_, diagnostics) = knowledge::load_dir(&dir);
    let listing: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        listing
            .iter()
            .any(|d| d.contains("invoice.toml") && d.contains("address_as_nin")),
        "{listing:#?}"
    );
    assert!(
        listing
            .iter()
            .any(|d| d.contains("invoice.toml") && d.contains("no_bu_at_all")),
        "{listing:#?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
