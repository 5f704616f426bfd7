//! The Telegram bot against a fake Bot API on loopback (`fake_telegram`), pointed at it with
//! the API-URL setting, the way a buyer meets it: what they send, what reaches their chat.
//! Texts are compared with `knowledge/` and `dialogs/`, never copied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use xiaoer::channels::telegram::{Telegram, SECRET_HEADER};
use xiaoer::config::{Secret, Settings, TelegramSettings};
use xiaoer::conversation::ChatKey;
use xiaoer::dialog::{Attachment, FlowId};
use xiaoer::normalize::Lang;
use xiaoer::reply;
use xiaoer::service::{Clock, Service};
use xiaoer::storage::{NewMessage, Sender, SqliteStore, Store};

use crate::fake_telegram::{chat_json, Failure, FakeTelegram, Sent, BOT_ID, BOT_USERNAME, TOKEN};
use crate::support::{add_agent, as_agent, beijing, repo_path, send, DiskFull, ManualClock};

const ORDER: &str = "2345678901234567";
/// Long enough for a 5xx: teloxide waits 10 s before it reads a server error.
const PATIENCE: Duration = Duration::from_secs(60);

fn settings(fake: &FakeTelegram, adjust: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = Settings {
        kb: repo_path("knowledge"),
        dialogs: repo_path("dialogs"),
        telegram: TelegramSettings {
            token: Secret::parse(TOKEN),
            api_url: fake.url.clone(),
            poll_timeout_s: 2,
            retry_initial_ms: 50,
            retry_max_ms: 400,
            outbox_interval_ms: 50,
            // Telegram's one a second per chat would make every test slow; one test keeps a
            // longer spacing and measures it.
            chat_interval_ms: 20,
            // Generous: the message after an album completes it at once, so a slow machine
            // never splits one, and no test waits this long.
            album_wait_ms: 10_000,
            ..TelegramSettings::default()
        },
        ..Settings::default()
    };
    adjust(&mut settings);
    settings
}

/// The shop: the bot over the real knowledge, connected to the fake Telegram.
struct Shop {
    fake: FakeTelegram,
    service: Arc<Service>,
    clock: Arc<ManualClock>,
}

impl Shop {
    /// A bot with an in-memory store, long polling the fake.
    async fn open(adjust: impl FnOnce(&mut Settings)) -> Shop {
        let fake = FakeTelegram::start().await;
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        Shop::open_on(fake, store, adjust).await
    }

    async fn open_on(
        fake: FakeTelegram,
        store: Arc<dyn Store>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Shop {
        let settings = settings(&fake, adjust);
        let (service, clock) = service(store, &settings);
        let telegram = Telegram::connect(service.clone(), &settings.telegram)
            .await
            .expect("the bot connects to the fake Bot API");
        assert_eq!(telegram.username(), BOT_USERNAME);
        telegram.start_polling().await.unwrap();
        Shop {
            fake,
            service,
            clock,
        }
    }

    fn buyer(&self, chat: i64) -> Buyer<'_> {
        Buyer { shop: self, chat }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.service.store()
    }

    fn knowledge(&self) -> Arc<xiaoer::bot::Bot> {
        self.service.bot()
    }

    /// Waits until the bot took the update (the next poll acknowledged it, which it does only
    /// once the turn is stored) and the chat's outbox is empty: all it was sent has arrived.
    async fn settle(&self, chat: i64, update_id: i64) {
        self.fake
            .wait_until(PATIENCE, "the update to be acknowledged", |fake| {
                fake.acknowledged(update_id)
            })
            .await;
        self.delivered(chat).await;
    }

    async fn delivered(&self, chat: i64) {
        let key = ChatKey::parse("telegram", &chat.to_string()).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !self.store().undelivered(&key).unwrap().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the outbox of {chat} never emptied"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn service(store: Arc<dyn Store>, settings: &Settings) -> (Arc<Service>, Arc<ManualClock>) {
    let bot = xiaoer::bot::Bot::load(&settings.kb, &settings.dialogs, settings.thresholds)
        .expect("knowledge/ and dialogs/ load");
    // 10:00 Beijing time: agents are at their desks.
    let clock = Arc::new(ManualClock(beijing(10, 0).into()));
    let service = Service::new(bot, store, clock.clone(), settings.clone()).unwrap();
    (Arc::new(service), clock)
}

/// A buyer in a private chat with the bot (their user id is the chat id).
struct Buyer<'a> {
    shop: &'a Shop,
    chat: i64,
}

impl Buyer<'_> {
    fn key(&self) -> ChatKey {
        ChatKey::parse("telegram", &self.chat.to_string()).unwrap()
    }

    /// The update of a message from this buyer with these fields (`text`, `photo` …).
    fn message(&self, fields: Value) -> Value {
        message_update(&self.shop.fake, self.chat, fields)
    }

    /// Sends an update; returns what reached the chat in answer.
    async fn send(&self, update: Value) -> Vec<Sent> {
        let before = self.shop.fake.sent_to(self.chat).len();
        let id = self.shop.fake.push(update);
        self.shop.settle(self.chat, id).await;
        self.shop.fake.sent_to(self.chat)[before..].to_vec()
    }

    async fn says(&self, text: &str) -> Vec<Sent> {
        self.send(self.message(json!({ "text": text }))).await
    }

    async fn sends_photo(&self, file_id: &str) -> Vec<Sent> {
        self.send(self.message(photo(file_id))).await
    }

    /// Presses a button of a message the bot sent.
    async fn presses(&self, message: &Sent, data: &str) -> Vec<Sent> {
        let press = json!({
            "callback_query": {
                "id": format!("press-{}", self.shop.fake.message_id()),
                "chat_instance": "ci",
                "from": {"id": self.chat.abs(), "is_bot": false, "first_name": "买家"},
                "message": {
                    "message_id": message.message_id, "date": 1_795_392_000,
                    "chat": chat_json(self.chat), "text": message.text
                },
                "data": data
            }
        });
        self.send(press).await
    }
}

/// The update of a message in `chat` (from its buyer) with these fields (`text`, `photo` …).
fn message_update(fake: &FakeTelegram, chat: i64, fields: Value) -> Value {
    let mut message = json!({
        "message_id": fake.message_id(),
        "date": 1_795_392_000,
        "chat": chat_json(chat),
        "from": {"id": chat.abs(), "is_bot": false, "first_name": "买家", "language_code": "zh-hans"},
    });
    for (key, value) in fields.as_object().unwrap() {
        message[key] = value.clone();
    }
    json!({ "message": message })
}

/// A photo's fields, in two sizes as Telegram sends them.
fn photo(file_id: &str) -> Value {
    json!({
        "photo": [
            {"file_id": format!("{file_id}-small"), "file_unique_id": "s", "width": 90, "height": 67},
            {"file_id": file_id, "file_unique_id": "l", "width": 1280, "height": 960}
        ]
    })
}

fn texts(sent: &[Sent]) -> Vec<&str> {
    sent.iter().map(|s| s.text.as_str()).collect()
}

fn template(shop: &Shop, name: &str) -> String {
    reply::template(
        shop.knowledge().engine.knowledge_base(),
        name,
        Lang::Zh,
        &[],
    )
}

fn answer(shop: &Shop, entry: &str) -> String {
    let bot = shop.knowledge();
    let entry = bot.engine.knowledge_base().entry(entry).unwrap();
    reply::answer(entry, Lang::Zh)
}

fn prompt(shop: &Shop, flow: &str, step: &str) -> String {
    let bot = shop.knowledge();
    let flow = bot.flows.get(&FlowId::parse(flow).unwrap()).unwrap();
    flow.step(step).unwrap().prompt.zh.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_greets_with_the_shops_welcome() {
    let shop = Shop::open(|_| {}).await;
    let buyer = shop.buyer(4201);
    let greeted = buyer.says("/start").await;
    assert_eq!(texts(&greeted), [template(&shop, "welcome")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_question_gets_its_exact_approved_answer() {
    let shop = Shop::open(|_| {}).await;
    let answered = shop.buyer(4202).says("能开发票吗").await;
    assert_eq!(texts(&answered), [answer(&shop, "invoice")]);
    assert!(answered[0].buttons.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clarify_is_answered_by_pressing_a_button() {
    // A cautious shop: the bot asks rather than guesses below 0.6.
    let shop = Shop::open(|s| s.thresholds.answer = 0.6).await;
    let buyer = shop.buyer(4203);
    let asked = buyer.says("寄回来运费").await;
    assert_eq!(asked.len(), 1, "{asked:?}");
    let question = &asked[0];
    assert!(question.buttons.len() >= 2, "{question:?}");
    // Each button is a numbered line of the question, answering with its number.
    for (index, (label, data)) in question.buttons.iter().enumerate() {
        assert_eq!(data, &(index + 1).to_string());
        assert!(
            question.text.lines().any(|line| line == label),
            "{label} in {question:?}"
        );
    }
    let (label, data) = &question.buttons[1];
    let title = label.strip_prefix("2. ").unwrap();

    let picked = buyer.presses(question, data).await;
    let bot = shop.knowledge();
    let entry = bot
        .engine
        .knowledge_base()
        .entries
        .iter()
        .find(|e| e.title == title)
        .unwrap();
    assert_eq!(texts(&picked), [entry.answer.as_str()]);
    // The press stops its spinner and the spent buttons go away.
    shop.fake
        .wait_until(PATIENCE, "the buttons to be spent", |fake| {
            !fake.calls("answerCallbackQuery").is_empty()
                && !fake.calls("editMessageReplyMarkup").is_empty()
        })
        .await;
    let edited = &shop.fake.calls("editMessageReplyMarkup")[0];
    assert_eq!(edited["message_id"], json!(question.message_id));
    assert!(edited.get("reply_markup").is_none(), "{edited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_item_flow_takes_a_photo_as_evidence() {
    let shop = Shop::open(|_| {}).await;
    let buyer = shop.buyer(4204);
    let opened = buyer.says("收到的杯子碎了").await;
    assert_eq!(texts(&opened), [prompt(&shop, "damaged_item", "order")]);
    let ordered = buyer.says(ORDER).await;
    assert_eq!(texts(&ordered), [prompt(&shop, "damaged_item", "photos")]);
    let photographed = buyer.sends_photo("crack-photo-1").await;
    assert_eq!(
        texts(&photographed),
        [prompt(&shop, "damaged_item", "remedy")]
    );
    // The remedies are buttons too, as the prompt numbers them.
    let remedy = &photographed[0];
    let labels: Vec<&str> = remedy.buttons.iter().map(|(l, _)| l.as_str()).collect();
    let numbered: Vec<&str> = remedy
        .text
        .lines()
        .filter(|l| l.starts_with(char::is_numeric))
        .collect();
    assert_eq!(labels, numbered);
    let chosen = buyer.presses(remedy, "2").await;
    let bot = shop.knowledge();
    let flow = bot
        .flows
        .get(&FlowId::parse("damaged_item").unwrap())
        .unwrap();
    assert_eq!(texts(&chosen)[0], flow.end("recorded").unwrap().say.zh);

    // The agent sees the photo with the case and the handoff.
    let photo = Attachment {
        kind: "photo".into(),
        id: "crack-photo-1".into(),
    };
    let cases = shop.store().cases().unwrap();
    let case = cases.iter().find(|c| c.chat == buyer.key()).unwrap();
    assert_eq!(case.order.as_deref(), Some(ORDER));
    assert_eq!(case.remedy.as_deref(), Some("exchange"));
    assert_eq!(case.evidence, std::slice::from_ref(&photo));
    let handoffs = shop.store().open_handoffs().unwrap();
    let handoff = handoffs.iter().find(|h| h.chat == buyer.key()).unwrap();
    assert_eq!(handoff.evidence, [photo]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_and_an_agents_reply_reach_the_chat() {
    let shop = Shop::open(|s| s.remind_after_s = 90).await;
    let buyer = shop.buyer(4205);
    let handed_off = buyer.says("/human").await;
    assert_eq!(texts(&handed_off), [answer(&shop, "human")]);
    let handoff = shop
        .store()
        .open_handoffs()
        .unwrap()
        .into_iter()
        .find(|h| h.chat == buyer.key())
        .expect("a handoff in the queue");
    assert_eq!(handoff.reason, "asked_for_person");

    // Nobody claims it for two minutes: the buyer is reminded.
    shop.clock.advance_s(120);
    assert_eq!(shop.service.send_reminders().await.unwrap(), 1);
    shop.delivered(buyer.chat).await;
    let reminded = shop.fake.sent_to(buyer.chat);
    assert_eq!(
        reminded.last().unwrap().text,
        template(&shop, "still_waiting")
    );

    // An agent takes the chat and answers from the console.
    shop.store()
        .claim(handoff.id, "小李", shop.clock.now_ms())
        .unwrap()
        .unwrap();
    let agent_reply = "您好，我是客服小李，已经看到您的留言了，请问有什么可以帮您？";
    post_agent_reply(&shop, &buyer.key(), agent_reply);
    shop.fake
        .wait_until(PATIENCE, "the agent's reply", |fake| {
            fake.sent_to(buyer.chat)
                .last()
                .is_some_and(|s| s.text == agent_reply)
        })
        .await;
    // While the agent has the chat the bot only listens.
    let held = buyer.says("好的，订单号是2345678901234567").await;
    assert!(held.is_empty(), "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_the_message_delivered_once() {
    let shop = Shop::open(|_| {}).await;
    shop.fake.fail_next_sends(&[Failure::TooManyRequests(1)]);
    let started = Instant::now();
    let greeted = shop.buyer(4206).says("/start").await;
    assert_eq!(texts(&greeted), [template(&shop, "welcome")]);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry_after was honoured"
    );
    assert_eq!(shop.fake.send_attempts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_until_the_message_is_delivered() {
    let shop = Shop::open(|_| {}).await;
    shop.fake.fail_next_sends(&[Failure::Server(502)]);
    let answered = shop.buyer(4207).says("能开发票吗").await;
    assert_eq!(texts(&answered), [answer(&shop, "invoice")]);
    assert_eq!(shop.fake.send_attempts(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_a_chat_arrive_in_order_while_another_chat_is_answered() {
    let shop = Shop::open(|_| {}).await;
    let (first, second) = (shop.buyer(4208), shop.buyer(4209));
    // Both chats write at once, three messages each.
    let questions = ["能开发票吗", "包邮吗", "/start"];
    let mut last = (0, 0);
    for question in questions {
        last.0 = shop.fake.push(first.message(json!({ "text": question })));
        last.1 = shop.fake.push(second.message(json!({ "text": question })));
    }
    shop.settle(first.chat, last.0).await;
    shop.settle(second.chat, last.1).await;
    for buyer in [&first, &second] {
        let received = shop.fake.sent_to(buyer.chat);
        assert_eq!(received.len(), 3, "{received:?}");
        assert_eq!(received[0].text, answer(&shop, "invoice"));
        assert_eq!(received[2].text, template(&shop, "welcome"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_replies_to_one_chat_is_spaced_out() {
    const SPACING: Duration = Duration::from_millis(400);
    let shop = Shop::open(|s| s.telegram.chat_interval_ms = SPACING.as_millis() as u64).await;
    let buyer = shop.buyer(4216);
    let mut last = 0;
    for question in ["能开发票吗", "包邮吗", "/start"] {
        last = shop.fake.push(buyer.message(json!({ "text": question })));
    }
    shop.settle(buyer.chat, last).await;
    let received = shop.fake.sent_to(buyer.chat);
    assert_eq!(received.len(), 3, "{received:?}");
    for pair in received.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        // The bot measures before it sends and the fake on arrival: allow for the difference
        // in the two requests' trips over loopback.
        assert!(
            gap >= SPACING - Duration::from_millis(100),
            "{gap:?} between two messages to one chat"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_who_blocked_the_bot_is_tried_once_per_message_and_the_agent_sees_why() {
    let shop = Shop::open(|_| {}).await;
    let (blocked, other) = (shop.buyer(4217), shop.buyer(4218));
    shop.fake
        .refuse(blocked.chat, "Forbidden: bot was blocked by the user");
    let refused = blocked.says("/human").await;
    assert!(refused.is_empty(), "{refused:?}");
    // Other chats are served as ever.
    let answered = other.says("能开发票吗").await;
    assert_eq!(texts(&answered), [answer(&shop, "invoice")]);
    // Many retry waits later (50 ms, doubling) it was still tried once.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(shop.fake.refused(blocked.chat), 1);
    let stored = shop.store().messages(&blocked.key(), 0).unwrap();
    let reply = stored.iter().find(|m| m.from == Sender::Bot).unwrap();
    assert_eq!(reply.text, answer(&shop, "human"));
    assert_eq!(reply.undeliverable.as_deref(), Some("blocked"));
    assert_eq!(reply.delivered_ms, None);

    // The agent opening the handoff sees that the buyer can't be reached, and why.
    let console = xiaoer::channels::http::router(shop.service.clone());
    let token = add_agent(shop.store().as_ref(), "小李", "agent");
    let handoff = shop
        .store()
        .open_handoffs()
        .unwrap()
        .into_iter()
        .find(|h| h.chat == blocked.key())
        .expect("a handoff in the queue");
    let uri = format!("/api/agent/handoffs/{}", handoff.id);
    let (status, detail) = as_agent(&console, Some(&token), "GET", &uri, None).await;
    assert_eq!(status, 200);
    let transcript = detail["transcript"].as_array().unwrap();
    let bot_line = transcript.iter().find(|m| m["from"] == "bot").unwrap();
    assert_eq!(bot_line["undeliverable"], "blocked");
    assert_eq!(transcript[0]["undeliverable"], Value::Null);

    // A later message is tried once too.
    post_agent_reply(&shop, &blocked.key(), "您好，我是客服小李。");
    shop.fake
        .wait_until(PATIENCE, "the second refusal", |fake| {
            fake.refused(blocked.chat) == 2
        })
        .await;
    shop.delivered(blocked.chat).await;

    // The buyer unblocks the bot and writes again: the answer arrives.
    shop.fake.accept(blocked.chat);
    let again = blocked.says("能开发票吗").await;
    assert!(!again.is_empty());
    assert_eq!(shop.fake.refused(blocked.chat), 2);
}

/// An agent's message to the chat, stored as the console stores it.
fn post_agent_reply(shop: &Shop, chat: &ChatKey, text: &str) {
    shop.store()
        .post_message(&NewMessage {
            chat,
            from: Sender::Agent,
            text,
            at_ms: shop.clock.now_ms(),
            source_id: None,
            agent: Some("小李"),
            knowledge_version: None,
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_message_is_split_at_telegrams_limit() {
    let shop = Shop::open(|_| {}).await;
    let buyer = shop.buyer(4210);
    let line = "您好，这是同事为您整理的详细说明。".repeat(10);
    let long = vec![line; 30].join("\n");
    assert!(long.chars().count() > 4096);
    post_agent_reply(&shop, &buyer.key(), &long);
    shop.fake
        .wait_until(PATIENCE, "both parts", |fake| {
            fake.sent_to(buyer.chat).len() == 2
        })
        .await;
    let parts = shop.fake.sent_to(buyer.chat);
    assert!(parts.iter().all(|p| p.text.encode_utf16().count() <= 4096));
    // Cut at a line break: nothing lost, nothing split mid-line.
    assert_eq!(format!("{}\n{}", parts[0].text, parts[1].text), long);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_outside_a_flow_and_a_sticker_get_polite_answers() {
    let shop = Shop::open(|_| {}).await;
    let buyer = shop.buyer(4211);
    let photo = buyer.sends_photo("random-photo").await;
    assert_eq!(texts(&photo), [template(&shop, "attachment_received")]);
    let sticker = buyer
        .send(buyer.message(json!({"sticker": {
            "file_id": "st", "file_unique_id": "st", "type": "regular",
            "width": 512, "height": 512, "is_animated": false, "is_video": false
        }})))
        .await;
    assert_eq!(
        texts(&sticker),
        [template(&shop, "message_kind_unsupported")]
    );
    let voice = buyer
        .send(buyer.message(json!({"voice": {
            "file_id": "v", "file_unique_id": "v", "duration": 3,
            "mime_type": "audio/ogg", "file_size": 4096
        }})))
        .await;
    assert_eq!(texts(&voice), [template(&shop, "message_kind_unsupported")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_store_could_not_keep_is_asked_again_in_the_buyers_language() {
    let store = Arc::new(DiskFull::new(Arc::new(
        SqliteStore::open_in_memory().unwrap(),
    )));
    let shop = Shop::open_on(FakeTelegram::start().await, store.clone(), |_| {}).await;
    let buyer = shop.buyer(4222);
    let answered = buyer.says("can I get an invoice?").await;
    assert!(!answered.is_empty());
    // The disk fills up: nothing more can be stored, what is stored can still be read.
    store.fill();
    let try_again = |lang| {
        reply::template(
            shop.knowledge().engine.knowledge_base(),
            "try_again",
            lang,
            &[],
        )
    };
    // A photo has no words: the language the conversation remembers.
    let photo = buyer.sends_photo("lost-photo").await;
    assert_eq!(texts(&photo), [try_again(Lang::En)]);
    let chinese = buyer.says("能开发票吗").await;
    assert_eq!(texts(&chinese), [try_again(Lang::Zh)]);
    let english = buyer.says("hello?").await;
    assert_eq!(texts(&english), [try_again(Lang::En)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_hears_only_what_is_addressed_to_the_bot() {
    let shop = Shop::open(|_| {}).await;
    let group = shop.buyer(-100_4212);
    let chatter = group.says("能开发票吗").await;
    assert!(chatter.is_empty(), "{chatter:?}");
    assert!(shop.store().messages(&group.key(), 0).unwrap().is_empty());
    let mention = format!("@{BOT_USERNAME}");
    let addressed = group
        .send(group.message(json!({
            "text": format!("{mention} 能开发票吗"),
            "entities": [{"type": "mention", "offset": 0, "length": mention.len()}]
        })))
        .await;
    assert_eq!(texts(&addressed), [answer(&shop, "invoice")]);
    let reply_to_bot = group
        .send(group.message(json!({
            "text": "能开发票吗",
            "reply_to_message": {
                "message_id": addressed[0].message_id, "date": 1_795_392_000,
                "chat": chat_json(group.chat), "text": addressed[0].text,
                "from": {"id": BOT_ID, "is_bot": true, "first_name": "店小二"}
            }
        })))
        .await;
    assert_eq!(reply_to_bot.len(), 1, "{reply_to_bot:?}");
}

/// A bot over the store in `data`, in a runtime of its own: shutting that runtime down is
/// killing the process.
async fn shop_to_kill(
    fake: &FakeTelegram,
    data: &std::path::Path,
    adjust: impl FnOnce(&mut Settings) + Send + 'static,
) -> (tokio::runtime::Runtime, Shop) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (fake, data) = (fake.clone(), data.to_path_buf());
    let shop = runtime
        .spawn(async move {
            let store = Arc::new(SqliteStore::open_dir(&data).unwrap());
            Shop::open_on(fake, store, adjust).await
        })
        .await
        .unwrap();
    (runtime, shop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_flow_resumes_at_the_same_step() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    let (first_runtime, first) = shop_to_kill(&fake, data.path(), |_| {}).await;
    const CHAT: i64 = 4213;
    let buyer = first.buyer(CHAT);
    buyer.says("收到的杯子碎了").await;
    let order = buyer.message(json!({ "text": ORDER }));
    let order_update = first.fake.push(order);
    first.settle(buyer.chat, order_update).await;
    assert_eq!(
        first.fake.sent_to(buyer.chat).last().unwrap().text,
        prompt(&first, "damaged_item", "photos")
    );
    let sent_before = first.fake.sent_to(buyer.chat).len();
    first_runtime.shutdown_background();
    drop(first);

    // Telegram never heard the order number acknowledged, and the buyer sends the photo while
    // the bot is down.
    fake.forget_acknowledgement(order_update);
    let photo_update = fake.push(message_update(&fake, CHAT, photo("crack-photo-2")));

    let store = Arc::new(SqliteStore::open_dir(data.path()).unwrap());
    let second = Shop::open_on(fake.clone(), store, |_| {}).await;
    second.settle(CHAT, photo_update).await;
    let after_restart = &second.fake.sent_to(CHAT)[sent_before..];
    // The order number, delivered again, is not answered again; the photo moves the flow on.
    assert_eq!(
        texts(after_restart),
        [prompt(&second, "damaged_item", "remedy")]
    );
    let buyer = second.buyer(CHAT);
    let chosen = buyer.says("3").await;
    assert_eq!(chosen.len(), 1, "{chosen:?}");
    let cases = second.store().cases().unwrap();
    let case = cases.iter().find(|c| c.chat == buyer.key()).unwrap();
    assert_eq!(case.order.as_deref(), Some(ORDER));
    assert_eq!(case.remedy.as_deref(), Some("return"));
    assert_eq!(case.evidence.len(), 1);
}

const WEBHOOK_SECRET: &str = "s3cret-token_1";

/// A bot in webhook mode, registered at the fake: its route and its service.
async fn webhook_shop(fake: &FakeTelegram) -> (axum::Router, Arc<Service>) {
    let store = Arc::new(SqliteStore::open_in_memory().unwrap());
    let settings = settings(fake, |s| {
        s.telegram.webhook_url = Some("https://shop.example/telegram/webhook".into());
        s.telegram.webhook_secret = Secret::parse(WEBHOOK_SECRET);
    });
    let (service, _clock) = service(store, &settings);
    let telegram = Telegram::connect(service.clone(), &settings.telegram)
        .await
        .unwrap();
    (telegram.start_webhook().await.unwrap(), service)
}

/// Posts an update to the webhook as Telegram does; returns the status once answered.
async fn post_to_webhook(router: &axum::Router, update: &Value) -> u16 {
    let secret = [(SECRET_HEADER, WEBHOOK_SECRET)];
    let body = Some(update.to_string());
    send(router, "POST", "/telegram/webhook", &secret, body)
        .await
        .0
}

/// The fields of a photo sent in an album.
fn album_photo(file_id: &str, album: &str) -> Value {
    let mut fields = photo(file_id);
    fields["media_group_id"] = json!(album);
    fields
}

/// What the chat stored from its buyer: (text, attachment ids), oldest first.
fn buyer_messages(store: &Arc<dyn Store>, chat: i64) -> Vec<(String, Vec<String>)> {
    let key = ChatKey::parse("telegram", &chat.to_string()).unwrap();
    store
        .messages(&key, 0)
        .unwrap()
        .into_iter()
        .filter(|m| m.from == Sender::Buyer)
        .map(|m| (m.text, m.attachments.into_iter().map(|a| a.id).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_is_one_answer_by_polling_even_over_two_polls() {
    let shop = Shop::open(|_| {}).await;
    let buyer = shop.buyer(4220);
    buyer.says("收到的杯子碎了").await;
    buyer.says(ORDER).await;
    let mut damage = album_photo("damage", "album-1");
    damage["caption"] = json!("破损和外包装");
    shop.fake.push(buyer.message(damage));
    // The second photo comes a moment later: most likely in the next poll.
    tokio::time::sleep(Duration::from_millis(50)).await;
    shop.fake
        .push(buyer.message(album_photo("packaging", "album-1")));
    let answered = buyer.says("1").await;
    assert_eq!(
        texts(&answered[..1]),
        [prompt(&shop, "damaged_item", "remedy")]
    );
    assert_eq!(
        buyer_messages(shop.store(), buyer.chat)[2..],
        [
            (
                "破损和外包装".to_string(),
                vec!["damage".to_string(), "packaging".to_string()]
            ),
            ("1".to_string(), vec![]),
        ]
    );
    let cases = shop.store().cases().unwrap();
    let case = cases.iter().find(|c| c.chat == buyer.key()).unwrap();
    assert_eq!(case.evidence.len(), 2, "{case:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_sent_to_the_webhook_is_one_answer() {
    let fake = FakeTelegram::start().await;
    let (router, service) = webhook_shop(&fake).await;
    const CHAT: i64 = 4219;
    let updates = [
        json!({"text": "收到的杯子碎了"}),
        json!({ "text": ORDER }),
        album_photo("damage", "album-2"),
        album_photo("packaging", "album-2"),
        json!({"text": "1"}),
    ];
    for (n, fields) in updates.into_iter().enumerate() {
        let mut update = message_update(&fake, CHAT, fields);
        update["update_id"] = json!(n + 1);
        assert_eq!(post_to_webhook(&router, &update).await, 200);
    }
    // The last message was answered once stored, after the album's turn: the photos were
    // one answer, and the remedy then picked.
    assert_eq!(
        buyer_messages(service.store(), CHAT)[2..],
        [
            (
                String::new(),
                vec!["damage".to_string(), "packaging".to_string()]
            ),
            ("1".to_string(), vec![]),
        ]
    );
    let cases = service.store().cases().unwrap();
    let key = ChatKey::parse("telegram", &CHAT.to_string()).unwrap();
    let case = cases.iter().find(|c| c.chat == key).expect("a case");
    assert_eq!(case.remedy.as_deref(), Some("compensation"));
    assert_eq!(case.evidence.len(), 2, "{case:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_takes_only_updates_carrying_the_secret() {
    let fake = FakeTelegram::start().await;
    let (router, service) = webhook_shop(&fake).await;
    let registered = fake.calls("setWebhook");
    assert_eq!(
        registered[0]["url"],
        json!("https://shop.example/telegram/webhook")
    );
    assert_eq!(registered[0]["secret_token"], json!(WEBHOOK_SECRET));

    let update = json!({
        "update_id": 1,
        "message": {
            "message_id": 1, "date": 1_795_392_000, "chat": chat_json(4214),
            "from": {"id": 4214, "is_bot": false, "first_name": "买家"}, "text": "能开发票吗"
        }
    });
    let post = |secret: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = secret.map(|s| (SECRET_HEADER, s)).into_iter().collect();
        let (router, body) = (&router, update.to_string());
        async move {
            send(router, "POST", "/telegram/webhook", &headers, Some(body))
                .await
                .0
        }
    };
    for wrong in [None, Some("guess"), Some("s3cret-token_2")] {
        assert_eq!(post(wrong).await, 401);
    }
    let chat = ChatKey::parse("telegram", "4214").unwrap();
    assert!(service.store().messages(&chat, 0).unwrap().is_empty());

    assert_eq!(post(Some(WEBHOOK_SECRET)).await, 200);
    // Telegram retries an update it got no 200 for: the second delivery is answered once.
    assert_eq!(post(Some(WEBHOOK_SECRET)).await, 200);
    fake.wait_until(PATIENCE, "the answer", |fake| {
        !fake.sent_to(4214).is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let invoice = reply::answer(
        service
            .bot()
            .engine
            .knowledge_base()
            .entry("invoice")
            .unwrap(),
        Lang::Zh,
    );
    assert_eq!(texts(&fake.sent_to(4214)), [invoice]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_telegram_bot_when_a_token_is_set() {
    let fake = FakeTelegram::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut child = crate::support::xiaoer_command(None)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_URL", &fake.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("xiaoer serve starts");
    let start = json!({"message": {
        "message_id": 1, "date": 1_795_392_000, "chat": chat_json(4215),
        "from": {"id": 4215, "is_bot": false, "first_name": "买家"}, "text": "/start"
    }});
    fake.push(start);
    fake.wait_until(PATIENCE, "the welcome", |fake| {
        !fake.sent_to(4215).is_empty()
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let knowledge = xiaoer::knowledge::load_dir(&repo_path("knowledge")).0;
    let welcome = reply::template(&knowledge, "welcome", Lang::Zh, &[]);
    assert_eq!(texts(&fake.sent_to(4215)), [welcome]);
    assert_eq!(fake.calls("deleteWebhook").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_album_acknowledged_before_a_restart_is_still_answered() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeTelegram::start().await;
    // The first bot waits long for the album's next photo, and is killed meanwhile.
    let (first_runtime, first) =
        shop_to_kill(&fake, data.path(), |s| s.telegram.album_wait_ms = 60_000).await;
    const CHAT: i64 = 4231;
    let buyer = first.buyer(CHAT);
    buyer.says("收到的杯子碎了").await;
    buyer.says(ORDER).await;
    let photo_update = first
        .fake
        .push(buyer.message(album_photo("damage", "album-9")));
    first
        .fake
        .wait_until(PATIENCE, "the album's photo to be acknowledged", |fake| {
            fake.acknowledged(photo_update)
        })
        .await;
    let sent_before = first.fake.sent_to(CHAT).len();
    first_runtime.shutdown_background();
    drop(first);

    // Telegram will not send the photo again: the restarted bot has it from its store.
    let store = Arc::new(SqliteStore::open_dir(data.path()).unwrap());
    // Nothing follows the album: it is handled once its short wait has passed.
    let second = Shop::open_on(fake.clone(), store, |s| s.telegram.album_wait_ms = 100).await;
    second
        .fake
        .wait_until(PATIENCE, "an answer to the album", |fake| {
            fake.sent_to(CHAT).len() > sent_before
        })
        .await;
    second.delivered(CHAT).await;
    assert_eq!(
        texts(&second.fake.sent_to(CHAT)[sent_before..]),
        [prompt(&second, "damaged_item", "remedy")]
    );
    assert_eq!(
        buyer_messages(second.store(), CHAT)[2..],
        [(String::new(), vec!["damage".to_string()])]
    );
    assert!(second.store().held_parts("telegram").unwrap().is_empty());
}
