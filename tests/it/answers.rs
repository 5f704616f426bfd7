//! What a buyer gets for typical messages: the approved answer, the product-aware answer,
//! a clarify question, or a handoff.

use xiaoer::engine::{Context, Decision, Reply};

use crate::support::engine;

#[track_caller]
fn check(question: &str, action: Decision, topic: Option<&str>) -> Reply {
    let reply = engine().ask(question);
    assert_eq!(
        (reply.action, reply.topic.as_ref().map(|t| t.as_str())),
        (action, topic),
        "{question} → {reply:#?}"
    );
    reply
}

#[test]
fn sound_alike_typos_reach_their_topic() {
    check("能开发漂吗", Decision::Answer, Some("invoice"));
    check("包由吗亲", Decision::Answer, Some("free_shipping"));
    check(
        "可以用花被付款吗",
        Decision::Answer,
        Some("payment_methods"),
    );
    check("尺吗怎么选", Decision::Answer, Some("size_advice"));
}

#[test]
fn traditional_chinese_gets_the_same_answer_as_simplified() {
    let simplified = check("可以开发票吗", Decision::Answer, Some("invoice"));
    let traditional = check("可以開發票嗎", Decision::Answer, Some("invoice"));
    assert_eq!(simplified.reply, traditional.reply);
}

#[test]
fn the_invoice_answer_states_the_shops_policy() {
    let reply = check("能开发票吗", Decision::Answer, Some("invoice"));
    let knowledge_base = engine().knowledge_base();
    assert_eq!(
        reply.reply,
        knowledge_base.entry("invoice").unwrap().answer.trim()
    );
    assert!(reply.reply.contains("一个月"), "{}", reply.reply);
}

#[test]
fn an_english_question_gets_the_english_answer() {
    let reply = check(
        "can I pay cash on delivery",
        Decision::Answer,
        Some("cash_on_delivery"),
    );
    let knowledge_base = engine().knowledge_base();
    assert_eq!(
        reply.reply,
        knowledge_base
            .entry("cash_on_delivery")
            .unwrap()
            .answer_en
            .trim()
    );
}

#[test]
fn made_to_order_shoes_answer_with_the_48_hour_rule() {
    let reply = check(
        "这款羊毛鞋多久发货",
        Decision::Answer,
        Some("dispatch_time"),
    );
    assert!(reply.reply.contains("48小时"), "{}", reply.reply);
    assert!(reply.reply.contains("手工羊毛鞋"), "{}", reply.reply);
}

#[test]
fn a_variant_question_answers_with_stock_from_the_catalog() {
    let reply = check("红色M码还有吗", Decision::Answer, Some("stock_check"));
    let catalog = &engine().knowledge_base().catalog;
    for product in &catalog.product {
        if let Some(count) = product.stock_of("红色", Some("M")) {
            assert!(
                reply.reply.contains(&product.name),
                "{} missing from {}",
                product.name,
                reply.reply
            );
            if count > 0 {
                assert!(reply.reply.contains(&count.to_string()), "{}", reply.reply);
            }
        }
    }
}

#[test]
fn a_price_question_after_naming_a_product_uses_that_product() {
    let mut context = Context::default();
    engine().respond("这款保温杯是什么材质", &mut context);
    let reply = engine().respond("多少钱", &mut context);
    let cup = engine()
        .knowledge_base()
        .catalog
        .product
        .iter()
        .find(|p| p.name == "保温杯")
        .unwrap();
    assert_eq!(
        reply.topic.as_ref().map(|t| t.as_str()),
        Some("price"),
        "{reply:#?}"
    );
    assert!(
        reply.reply.contains(&format!("{}", cup.price as u32)),
        "{}",
        reply.reply
    );
}

#[test]
fn asking_for_a_person_or_complaining_hands_off_at_once() {
    for text in [
        "转人工",
        "我要人工客服",
        "can I talk to a real person",
        "我要投诉你们",
        "再不处理我就给差评",
        "你们就是骗子",
    ] {
        let reply = engine().ask(text);
        assert_eq!(reply.action, Decision::Handoff, "{text} → {reply:#?}");
    }
}

#[test]
fn after_sales_problems_start_a_dialog() {
    check("收到的杯子碎了", Decision::Dialog, Some("damaged_item"));
    check("你们发错货了", Decision::Dialog, Some("wrong_item"));
}

#[test]
fn out_of_scope_questions_get_no_policy_answer() {
    for text in [
        "今天北京天气怎么样",
        "给我讲个笑话",
        "do you ship to australia",
    ] {
        let reply = engine().ask(text);
        assert_ne!(reply.action, Decision::Answer, "{text} → {reply:#?}");
        assert_ne!(reply.action, Decision::Dialog, "{text} → {reply:#?}");
    }
}

#[test]
fn a_clarify_question_can_be_answered_by_number() {
    let mut context = Context {
        choices: vec![],
        product: None,
    };
    context.choices = ["refund_time", "return_howto"]
        .iter()
        .map(|id| engine().knowledge_base().entry(id).unwrap().id.clone())
        .collect();
    let reply = engine().respond("第二个", &mut context);
    assert_eq!(
        reply.topic.as_ref().map(|t| t.as_str()),
        Some("return_howto"),
        "{reply:#?}"
    );
    assert!(context.choices.is_empty());
}

#[test]
fn bad_input_gets_a_reply_not_a_crash() {
    let empty = engine().ask("   \u{0}\u{7} ");
    assert_eq!(empty.action, Decision::Clarify);
    assert!(!empty.reply.is_empty());
    let huge = engine().ask(&"发票".repeat(50_000));
    assert_eq!(huge.action, Decision::Handoff);
    let hostile = engine().ask("'; DROP TABLE chats; -- <script>alert(1)</script> {name} \u{202e}");
    assert!(!hostile.reply.contains("{name}"));
}

#[test]
fn no_reply_leaves_a_template_slot_unfilled() {
    let questions = [
        "这款羊毛鞋多久发货",
        "红色M码还有吗",
        "T恤多少钱",
        "围巾包邮吗",
        "卫衣什么材质",
        "马克杯尺码怎么选",
        "T恤尺码怎么选",
        "how much is the hoodie",
        "is the red mug in stock",
    ];
    for question in questions {
        let reply = engine().ask(question);
        assert!(
            !reply.reply.contains('{') && !reply.reply.contains('}'),
            "{question} → {}",
            reply.reply
        );
    }
}

#[test]
fn a_size_the_last_product_lacks_is_looked_up_across_the_catalog() {
    let mut context = Context::default();
    engine().respond("这款羊毛鞋多久发货", &mut context);
    let reply = engine().respond("红色M码还有吗", &mut context);
    assert!(reply.reply.contains("连帽卫衣"), "{}", reply.reply);
    assert!(!reply.reply.contains("羊毛鞋"), "{}", reply.reply);
}

#[test]
fn a_lone_number_is_no_complaint() {
    for text in ["2", "88888", "12"] {
        let reply = engine().ask(text);
        assert_ne!(
            reply.topic.as_ref().map(|t| t.as_str()),
            Some("complaint"),
            "{text} → {reply:#?}"
        );
    }
}

#[test]
fn a_buyer_who_gives_their_measurements_gets_a_size_not_the_chart() {
    let hoodie = check(
        "身高170体重65kg卫衣穿什么码",
        Decision::Answer,
        Some("size_advice"),
    );
    assert!(hoodie.reply.contains("建议您选L"), "{}", hoodie.reply);
    assert!(!hoodie.reply.contains("请您告诉我身高"), "{}", hoodie.reply);
    let shoes = engine().ask("脚长25.3厘米羊毛鞋穿多大");
    assert!(shoes.reply.contains("建议您选41"), "{}", shoes.reply);
    let english = engine().ask("which hoodie size for me? 180cm 80kg");
    assert!(english.reply.contains("size XL"), "{}", english.reply);
    // Without measurements the chart is shown and they are asked for.
    let chart = check("卫衣尺码怎么选", Decision::Answer, Some("size_advice"));
    assert!(chart.reply.contains("请您告诉我身高"), "{}", chart.reply);
}

#[test]
fn stock_answers_name_the_product_and_keep_to_what_was_asked() {
    let red = engine().ask("羊毛拖鞋红色还有吗");
    assert!(red.reply.contains("红色36-37码"), "{}", red.reply);
    assert!(!red.reply.contains("灰色"), "{}", red.reply);
    let english = engine().ask("is the hoodie in stock");
    assert!(english.reply.contains("hoodie"), "{}", english.reply);
    assert!(english.reply.contains("grey, size M"), "{}", english.reply);
    assert!(!english.reply.contains("(,"), "{}", english.reply);
    // A restock question is answered with the restock policy, not a list of other variants.
    let restock = check("保温杯什么时候补货", Decision::Answer, Some("restock"));
    let policy = engine()
        .knowledge_base()
        .entry("restock")
        .unwrap()
        .answer
        .trim();
    assert_eq!(restock.reply, policy);
}
