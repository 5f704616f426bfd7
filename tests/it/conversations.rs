//! Whole conversations through the HTTP chat API (`router(service).oneshot`), with an
//! in-memory store and a clock the tests move: flows end to end, leaving them, clarify by
//! number, follow-ups, handoffs with their context, service hours, reminders, bad input.

use serde_json::Value;
use xiaoer::storage::Sender;

use crate::support::{beijing, chat_id, replies, TestBot};

const ORDER: &str = "2345678901234567";

/// One flow, scripted: what the buyer says (a `photo:` line sends a photo), and what the
/// recorded case must say.
struct Script {
    opening: &'static str,
    flow: &'static str,
    answers: &'static [&'static str],
    remedy: Option<&'static str>,
    responsible: &'static str,
    description: Option<&'static str>,
}

const SCRIPTS: &[Script] = &[
    Script {
        opening: "收到的杯子碎了",
        flow: "damaged_item",
        answers: &[
            "订单号 2345 6789 0123 4567",
            "photo:crack-1",
            "换一件新的吧",
        ],
        remedy: Some("exchange"),
        responsible: "courier",
        description: None,
    },
    Script {
        opening: "少发了一双袜子",
        flow: "missing_item",
        answers: &[ORDER, "少了一双羊毛袜", "photo:parcel-1"],
        remedy: None,
        responsible: "shop",
        description: Some("少了一双羊毛袜"),
    },
    Script {
        opening: "你们发错货了，我买的是红色收到的是蓝色",
        flow: "wrong_item",
        answers: &[ORDER, "photo:wrong-1", "2"],
        remedy: Some("return"),
        responsible: "shop",
        description: None,
    },
    Script {
        opening: "鞋子穿了两天就开胶了",
        flow: "quality_issue",
        answers: &[ORDER, "photo:sole-1", "左脚鞋底前面开胶了", "补偿"],
        remedy: Some("compensation"),
        responsible: "shop",
        description: Some("左脚鞋底前面开胶了"),
    },
    Script {
        opening: "实物和图片差别太大了",
        flow: "not_as_described",
        answers: &[ORDER, "颜色比图片暗很多", "没有", "1"],
        remedy: Some("compensation"),
        responsible: "undetermined",
        description: Some("颜色比图片暗很多"),
    },
    Script {
        opening: "快递怎么还没到 都一个星期了",
        flow: "late_delivery",
        answers: &[ORDER, "正确"],
        remedy: None,
        responsible: "courier",
        description: None,
    },
    Script {
        opening: "我要改一下收货地址",
        flow: "change_address",
        answers: &[
            ORDER,
            "还没发货",
            "张三 13800000000 浙江省杭州市西湖区文三路100号",
        ],
        remedy: None,
        responsible: "buyer",
        description: Some("张三 13800000000 浙江省杭州市西湖区文三路100号"),
    },
    Script {
        opening: "帮我取消订单",
        flow: "cancel_order",
        answers: &[ORDER, "2"],
        remedy: None,
        responsible: "buyer",
        description: None,
    },
];

async fn send(bot: &TestBot, chat: &str, line: &str) -> Value {
    match line.strip_prefix("photo:") {
        Some(file) => bot.send_photo(chat, file).await,
        None => bot.say(chat, line).await,
    }
}

#[tokio::test]
async fn every_after_sales_flow_runs_to_a_recorded_case_and_a_handoff() {
    let bot = TestBot::new();
    for (n, script) in SCRIPTS.iter().enumerate() {
        let chat = format!("flow-{n}");
        let first = bot.say(&chat, script.opening).await;
        assert_eq!(first["topic"], script.flow, "{}: {first}", script.opening);
        assert_eq!(first["state"], "flow", "{first}");
        let opening = replies(&first);
        assert!(
            opening.contains("抱歉"),
            "a flow starts with an apology: {opening}"
        );
        let mut last = first;
        for answer in script.answers {
            assert_eq!(
                last["state"], "flow",
                "{}: stopped before {answer}: {last}",
                script.flow
            );
            last = send(&bot, &chat, answer).await;
        }
        assert_eq!(last["action"], "handoff", "{}: {last}", script.flow);
        assert_eq!(last["state"], "waiting", "{}: {last}", script.flow);

        let cases = bot.store().cases().unwrap();
        let case = cases
            .iter()
            .rfind(|c| c.chat == TestBot::chat(&chat))
            .expect("a case");
        assert_eq!(case.kind, script.flow);
        assert_eq!(case.order.as_deref(), Some(ORDER), "{}", script.flow);
        assert_eq!(case.remedy.as_deref(), script.remedy, "{}", script.flow);
        assert_eq!(case.responsible, script.responsible, "{}", script.flow);
        assert_eq!(case.status, "pending", "{}", script.flow);
        assert_eq!(
            case.description.as_deref(),
            script.description,
            "{}",
            script.flow
        );
        let photos: Vec<&str> = script
            .answers
            .iter()
            .filter_map(|a| a.strip_prefix("photo:"))
            .collect();
        let evidence: Vec<&str> = case.evidence.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(evidence, photos, "{}", script.flow);

        let handoffs = bot.store().open_handoffs().unwrap();
        let handoff = handoffs
            .iter()
            .find(|h| h.chat == TestBot::chat(&chat))
            .expect("queued");
        assert_eq!(handoff.reason, "flow_decision");
        assert_eq!(handoff.case_id, Some(case.id));
        assert_eq!(
            handoff.collected.get("order").map(String::as_str),
            Some(ORDER)
        );
        assert!(handoff.summary.contains(ORDER), "{}", handoff.summary);
    }
}

#[tokio::test]
async fn a_complaint_is_queued_at_once_and_its_details_reach_the_handoff() {
    let bot = TestBot::new();
    let first = bot.say("c1", "我要投诉你们的客服").await;
    assert_eq!(first["action"], "handoff", "{first}");
    assert_eq!(first["state"], "waiting");
    assert!(replies(&first).contains("我非常理解您的心情"), "{first}");
    let queued = bot.store().open_handoffs().unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(
        (queued[0].reason.as_str(), queued[0].priority.as_str()),
        ("complaint", "urgent")
    );

    bot.say("c1", "昨天问了三次都没人回复，态度也很差").await;
    let last = bot.say("c1", ORDER).await;
    assert_eq!(last["state"], "waiting", "{last}");
    let handoff = &bot.store().open_handoffs().unwrap()[0];
    assert_eq!(
        handoff.collected.get("what").map(String::as_str),
        Some("昨天问了三次都没人回复，态度也很差")
    );
    assert_eq!(
        handoff.collected.get("order").map(String::as_str),
        Some(ORDER)
    );
    let case = bot
        .store()
        .cases()
        .unwrap()
        .pop()
        .expect("the complaint is recorded");
    assert_eq!(
        (case.kind.as_str(), case.status.as_str()),
        ("complaint", "pending")
    );
    assert_eq!(handoff.case_id, Some(case.id));
}

#[tokio::test]
async fn a_buyer_leaves_a_flow_with_suanle_or_a_new_question() {
    let bot = TestBot::new();
    bot.say("l1", "收到的杯子碎了").await;
    bot.say("l1", ORDER).await;
    let left = bot.say("l1", "算了").await;
    assert_eq!(left["state"], "bot", "{left}");
    let after = bot.say("l1", "能开发票吗").await;
    assert_eq!(
        (after["action"].as_str(), after["topic"].as_str()),
        (Some("answer"), Some("invoice"))
    );
    let case = bot
        .store()
        .cases()
        .unwrap()
        .pop()
        .expect("what was told is kept");
    assert_eq!(
        (case.status.as_str(), case.order.as_deref()),
        ("abandoned", Some(ORDER))
    );
    assert!(bot.store().open_handoffs().unwrap().is_empty());

    bot.say("l2", "鞋子穿了两天就开胶了").await;
    let switched = bot.say("l2", "你们支持花呗付款吗？").await;
    assert_eq!(switched["topic"], "payment_methods", "{switched}");
    assert_eq!(switched["state"], "bot", "{switched}");
}

#[tokio::test]
async fn a_step_asks_again_politely_then_hands_off_with_what_was_collected() {
    let bot = TestBot::new();
    bot.say("r1", "收到的杯子碎了").await;
    let first = bot.say("r1", "我找不到订单号").await;
    assert_eq!(first["state"], "flow");
    assert!(replies(&first).contains("订单号"), "{first}");
    bot.say("r1", "在哪里").await;
    let stuck = bot.say("r1", "还是找不到").await;
    assert_eq!(stuck["action"], "handoff", "{stuck}");
    let handoff = &bot.store().open_handoffs().unwrap()[0];
    assert_eq!(handoff.reason, "flow_stuck");
}

#[tokio::test]
async fn a_clarify_question_is_answered_by_number() {
    // A cautious shop: the bot asks rather than guesses below 0.6.
    let bot = TestBot::with_settings(|s| s.thresholds.answer = 0.6);
    let knowledge_base = bot.service.bot();
    let knowledge_base = knowledge_base.engine.knowledge_base();
    let asked = bot.say("n1", "寄回来运费").await;
    assert_eq!(asked["action"], "clarify", "{asked}");
    let text = replies(&asked);
    let second = text
        .lines()
        .find_map(|l| l.strip_prefix("2. "))
        .expect("a numbered list");
    let picked = bot.say("n1", "2").await;
    assert_eq!(picked["action"], "answer", "{picked}");
    let topic = picked["topic"].as_str().unwrap();
    assert_eq!(knowledge_base.entry(topic).unwrap().title, second);
}

#[tokio::test]
async fn follow_ups_use_the_conversation_so_far() {
    let bot = TestBot::new();
    bot.say("f1", "换货怎么换").await;
    let returns = bot.say("f1", "那退货呢").await;
    assert_eq!(returns["action"], "answer", "{returns}");
    assert!(
        returns["topic"].as_str().unwrap().contains("return"),
        "{returns}"
    );

    let catalog_price = {
        let bot = bot.service.bot();
        let product = bot
            .engine
            .knowledge_base()
            .catalog
            .product
            .iter()
            .find(|p| p.name == "保温杯")
            .cloned()
            .unwrap();
        product.price
    };
    bot.say("f2", "这款保温杯什么材质").await;
    let price = bot.say("f2", "多少钱").await;
    assert_eq!(price["topic"], "price");
    assert!(
        replies(&price).contains(&format!("{catalog_price}")),
        "{price}"
    );
}

#[tokio::test]
async fn asking_for_a_person_queues_a_handoff_with_its_context() {
    let bot = TestBot::new();
    bot.say("h1", "能开发票吗").await;
    let handed = bot.say("h1", "转人工").await;
    assert_eq!(
        (handed["action"].as_str(), handed["state"].as_str()),
        (Some("handoff"), Some("waiting"))
    );
    let handoff = bot.store().open_handoffs().unwrap().pop().unwrap();
    assert_eq!(handoff.reason, "asked_for_person");
    assert_eq!(handoff.priority, "normal");
    assert_eq!(handoff.state, "waiting");
    assert!(handoff.summary.contains("转人工"), "{}", handoff.summary);
    assert!(!handoff.candidates.is_empty());
    let transcript = bot.store().messages(&TestBot::chat("h1"), 0).unwrap();
    let lines: Vec<(Sender, &str)> = transcript
        .iter()
        .map(|m| (m.from, m.text.as_str()))
        .collect();
    assert_eq!(lines[0], (Sender::Buyer, "能开发票吗"));
    assert_eq!(lines[2], (Sender::Buyer, "转人工"));
    assert_eq!(lines.len(), 4);
    assert_eq!(
        transcript[2].act.as_deref(),
        Some("handoff"),
        "the buyer's message records what the bot did with it"
    );
    let answer = &transcript[1];
    assert_eq!(answer.topic.as_deref(), Some("invoice"));
    assert_eq!(
        answer.knowledge_version.as_deref(),
        Some(bot.service.bot().version.hash.as_str())
    );
    assert!(answer.confidence.unwrap() > 0.5);
}

#[tokio::test]
async fn low_confidence_hands_off_and_a_repeat_after_a_clarify_does_too() {
    let bot = TestBot::with_settings(|s| s.thresholds.answer = 0.7);
    let lost = bot.say("q1", "可以帮我写一份工作总结吗").await;
    assert_eq!(lost["action"], "handoff", "{lost}");
    assert_eq!(
        bot.store().open_handoffs().unwrap()[0].reason,
        "low_confidence"
    );

    let first = bot.say("q2", "寄回来运费").await;
    assert_eq!(first["action"], "clarify", "{first}");
    let again = bot.say("q2", "寄回来的运费？？").await;
    assert_eq!(again["action"], "handoff", "{again}");
    let reasons: Vec<String> = bot
        .store()
        .open_handoffs()
        .unwrap()
        .into_iter()
        .map(|h| h.reason)
        .collect();
    assert!(reasons.contains(&"repeated".to_string()), "{reasons:?}");
}

#[tokio::test]
async fn anger_goes_to_the_front_of_the_queue() {
    let bot = TestBot::new();
    bot.say("a1", "转人工").await;
    bot.clock.advance_s(5);
    for (chat, text) in [
        ("a2", "你们这是什么垃圾东西"),
        ("a3", "东西到底什么时候到！！！"),
        ("a4", "WHERE IS MY PARCEL"),
    ] {
        let angry = bot.say(chat, text).await;
        assert_eq!(angry["action"], "handoff", "{text}: {angry}");
        assert!(
            replies(&angry).contains("我非常理解您的心情")
                || replies(&angry).contains("understand how you feel"),
            "{angry}"
        );
    }
    let queue = bot.store().open_handoffs().unwrap();
    let order: Vec<(&str, &str)> = queue
        .iter()
        .map(|h| (h.chat.id(), h.reason.as_str()))
        .collect();
    let (a1, a2, a3, a4) = (chat_id("a1"), chat_id("a2"), chat_id("a3"), chat_id("a4"));
    assert_eq!(
        order,
        [
            (a2.as_str(), "angry"),
            (a3.as_str(), "angry"),
            (a4.as_str(), "angry"),
            (a1.as_str(), "asked_for_person")
        ]
    );
}

#[tokio::test]
async fn outside_service_hours_the_buyer_is_told_when_agents_are_back() {
    let bot = TestBot::new();
    bot.clock.set(beijing(3, 0));
    let night = bot.say("s1", "转人工").await;
    let text = replies(&night);
    assert!(
        text.contains("休息时间") && text.contains("将于08:30上班"),
        "{text}"
    );
    bot.clock.set(beijing(10, 0));
    let day = bot.say("s2", "转人工").await;
    assert!(!replies(&day).contains("休息时间"), "{day}");
    bot.clock.set(beijing(23, 30));
    let late = bot.say("s3", "I want to talk to a real person").await;
    assert!(replies(&late).contains("back at 08:30"), "{late}");
}

#[tokio::test]
async fn an_unclaimed_handoff_reminds_the_buyer_once_and_a_claimed_one_never() {
    let bot = TestBot::new();
    bot.say("w1", "转人工").await;
    bot.say("w2", "转人工").await;
    let w2 = bot.store().open_handoffs().unwrap()[1].id;
    bot.store()
        .claim(
            w2,
            "alice",
            bot.clock.0.load(std::sync::atomic::Ordering::SeqCst),
        )
        .unwrap()
        .unwrap();
    bot.clock.advance_s(30);
    assert_eq!(bot.service.send_reminders().await.unwrap(), 0, "too early");
    bot.clock.advance_s(61);
    assert_eq!(bot.service.send_reminders().await.unwrap(), 1);
    assert_eq!(bot.service.send_reminders().await.unwrap(), 0, "only once");
    let (status, polled) = bot
        .request(
            "GET",
            &format!("/api/chat/{}/messages?after=2", chat_id("w1")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let texts: Vec<&str> = polled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 1, "{polled}");
    assert!(texts[0].contains("久等"), "{texts:?}");
    bot.clock.set(beijing(2, 0));
    bot.say("w3", "转人工").await;
    bot.clock.set(beijing(4, 0));
    assert_eq!(
        bot.service.send_reminders().await.unwrap(),
        0,
        "nobody is promised 'shortly' at night"
    );
    bot.clock.set(beijing(8, 31));
    assert_eq!(
        bot.service.send_reminders().await.unwrap(),
        1,
        "the night's buyers hear from us when the shift starts"
    );
    let (_, other) = bot
        .request(
            "GET",
            &format!("/api/chat/{}/messages", chat_id("w2")),
            None,
        )
        .await;
    assert!(other["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| !m["text"].as_str().unwrap().contains("久等")));
}

#[tokio::test]
async fn while_an_agent_has_the_chat_the_bot_only_stores_and_after_release_it_answers_again() {
    let bot = TestBot::new();
    bot.say("g1", "转人工").await;
    let id = bot.store().open_handoffs().unwrap()[0].id;
    let now = bot.clock.0.load(std::sync::atomic::Ordering::SeqCst);
    bot.store().claim(id, "alice", now).unwrap().unwrap();
    assert!(
        matches!(bot.store().claim(id, "bob", now).unwrap(), Err(xiaoer::storage::ClaimRefused::HeldBy(who)) if who == "alice")
    );
    let held = bot.say("g1", "能开发票吗").await;
    assert_eq!(held["state"], "agent");
    assert_eq!(held["replies"].as_array().unwrap().len(), 0, "{held}");
    let stored = bot.store().messages(&TestBot::chat("g1"), 0).unwrap();
    assert_eq!(stored.last().unwrap().text, "能开发票吗");
    assert!(bot
        .store()
        .release(id, "同事已为您处理完毕", "test", now)
        .unwrap());
    let answered = bot.say("g1", "能开发票吗").await;
    assert_eq!(
        (answered["state"].as_str(), answered["topic"].as_str()),
        (Some("bot"), Some("invoice"))
    );
}

#[tokio::test]
async fn waiting_buyers_get_routine_answers_and_can_leave_the_queue() {
    let bot = TestBot::new();
    bot.say("x1", "转人工").await;
    let routine = bot.say("x1", "能开发票吗").await;
    assert_eq!(
        (routine["topic"].as_str(), routine["state"].as_str()),
        (Some("invoice"), Some("waiting"))
    );
    let unsure = bot.say("x1", "可以帮我写一份工作总结吗").await;
    assert_eq!(unsure["action"], "hold");
    let left = bot.say("x1", "不用了").await;
    assert_eq!(left["state"], "bot");
    assert!(bot.store().open_handoffs().unwrap().is_empty());
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_odd_ones_correct_replies() {
    let bot = TestBot::new();
    let b1 = chat_id("b1");
    for (body, status) in [
        (format!("{{\"chat_id\": \"{b1}\""), 400),
        ("not json".to_string(), 400),
        ("{\"text\": \"hi\"}".to_string(), 400),
        ("{\"chat_id\": \"\", \"text\": \"hi\"}".to_string(), 400),
        (format!("{{\"chat_id\": \"{b1}\", \"text\": \"   \"}}"), 400),
        (format!("{{\"chat_id\": \"{b1}\", \"text\": \"hi\", \"extra\": 1}}"), 400),
        (format!("{{\"chat_id\": \"{b1}\", \"text\": \"hi\", \"attachments\": [{{\"kind\": \"virus\", \"id\": \"x\"}}]}}"), 400),
    ] {
        let (got, json) = bot.request("POST", "/api/chat", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}: {json}");
    }
    let huge = serde_json::json!({"chat_id": b1, "text": "很".repeat(100_000)}).to_string();
    let (got, json) = bot.request("POST", "/api/chat", Some(huge)).await;
    assert_eq!(got, 413, "{json}");
    let long = bot.say("b2", &"请帮我看看".repeat(500)).await;
    assert_eq!(
        long["action"], "handoff",
        "a long message goes to a person: {long}"
    );
    let hostile = bot
        .say("b3", "<script>alert(1)</script>'; DROP TABLE messages; --")
        .await;
    assert_eq!(hostile["action"], "handoff");
    assert_eq!(
        bot.store().messages(&TestBot::chat("b3"), 0).unwrap()[0].text,
        "<script>alert(1)</script>'; DROP TABLE messages; --"
    );
    let nobody = format!("/api/chat/{}/messages", chat_id("nobody"));
    let (status, unknown) = bot.request("GET", &nobody, None).await;
    assert_eq!(
        (status, unknown["messages"].as_array().map(Vec::len)),
        (200, Some(0))
    );
}

#[tokio::test]
async fn concurrent_messages_on_one_chat_are_handled_in_order_and_all_stored() {
    let bot = std::sync::Arc::new(TestBot::new());
    let mut tasks = Vec::new();
    for n in 0..20 {
        let bot = bot.clone();
        tasks.push(tokio::spawn(async move {
            bot.say("cc", &format!("能开发票吗 {n}")).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap()["topic"], "invoice");
    }
    let stored = bot.store().messages(&TestBot::chat("cc"), 0).unwrap();
    assert_eq!(stored.len(), 40);
    for pair in stored.chunks(2) {
        assert_eq!(
            (pair[0].from, pair[1].from),
            (Sender::Buyer, Sender::Bot),
            "each question is followed by its answer"
        );
    }
    let mut asked: Vec<&str> = stored
        .iter()
        .filter(|m| m.from == Sender::Buyer)
        .map(|m| m.text.as_str())
        .collect();
    asked.sort();
    asked.dedup();
    assert_eq!(asked.len(), 20, "none lost");
}
