//! The agent console (`/console`) in a real browser: headless Chromium driven over WebDriver
//! (chromedriver + fantoccini) against the real HTTP router, served on 127.0.0.1 on a port the
//! OS picks, over the in-memory `TestBot` (its manual clock makes the waiting times exact).
//!
//! Chromium and ChromeDriver come from Debian's `chromium` and `chromium-driver` (`.ci/run`
//! installs them). Where they are missing the test fails under CI (`CI` set) and is skipped with
//! a loud message elsewhere, so `cargo test` on a laptop without a browser still runs the rest.
//! `XIAOER_CHROMIUM` and `XIAOER_CHROMEDRIVER` point at another Chromium/Chrome and its driver.
//!
//! Screenshots go to `target/tmp/console-screenshots/`; with `XIAOER_UPDATE_SCREENSHOTS=1` the
//! test writes `docs/console-queue.png` and `docs/console-handoff.png`, which README shows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::TestBot;

const ORDER: &str = "2345678901234567";
/// How long the page may take to show something (it polls every 2 s).
const PATIENCE: Duration = Duration::from_secs(15);

/// The browser and its driver, found on this machine.
struct Chromium {
    browser: PathBuf,
    driver: PathBuf,
}

impl Chromium {
    /// The programs named by `XIAOER_CHROMIUM`/`XIAOER_CHROMEDRIVER`, else found on PATH.
    fn find() -> Option<Chromium> {
        let chosen = |variable: &str, names: &[&str]| match std::env::var_os(variable) {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
            None => on_path(names),
        };
        Some(Chromium {
            browser: chosen(
                "XIAOER_CHROMIUM",
                &["chromium", "chromium-browser", "google-chrome"],
            )?,
            driver: chosen("XIAOER_CHROMEDRIVER", &["chromedriver"])?,
        })
    }
}

/// The first of `names` found in a folder of PATH (or /usr/bin).
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut folders: Vec<PathBuf> = std::env::split_paths(&path).collect();
    folders.push(PathBuf::from("/usr/bin"));
    names.iter().find_map(|name| {
        folders
            .iter()
            .map(|folder| folder.join(name))
            .find(|candidate| candidate.is_file())
    })
}

fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A ChromeDriver process on a port it picks; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &Path) -> Driver {
        let mut child = Command::new(path)
            .arg("--port=0")
            // The shop's time zone, so the page shows the times an agent in China sees.
            .env("TZ", "Asia/Shanghai")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let rest = line.split("started successfully on port ").nth(1)?;
                rest.trim_end_matches('.').trim().parse::<u16>().ok()
            })
            .unwrap_or_else(|| panic!("{} did not say which port it took", path.display()));
        // Keep reading its stdout so the driver never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session with a fresh profile, flags as `machines/rust.md` prescribes.
async fn open_browser(chromium: &Chromium, driver: &Driver, profile: &Path) -> Client {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-quic".to_string(),
        "--no-first-run".to_string(),
        "--disable-background-networking".to_string(),
        "--disable-component-update".to_string(),
        "--disable-sync".to_string(),
        "--disable-dev-shm-usage".to_string(),
        "--force-device-scale-factor=1".to_string(),
        "--window-size=1280,820".to_string(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium.browser, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no browser session from {} with {}: {e}",
                driver.url,
                chromium.browser.display()
            )
        })
}

/// Serves the bot's real router on 127.0.0.1 on a free port; returns its base URL.
async fn serve(bot: &TestBot) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = xiaoer::channels::http::router(bot.service.clone());
    let app = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_a_handoff_in_the_console_and_hands_it_back() {
    let Some(chromium) = Chromium::find() else {
        let help = "the agent console's browser test needs Chromium and ChromeDriver: \
                    `sudo apt-get install chromium chromium-driver` (Debian/Ubuntu), or set \
                    XIAOER_CHROMIUM and XIAOER_CHROMEDRIVER to a Chrome and its matching driver";
        if running_in_ci() {
            panic!("{help}");
        }
        // Straight to the process's stderr: libtest swallows an eprintln! of a passing test.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!! SKIPPED an_agent_takes_a_handoff_in_the_console_and_hands_it_back: {help}\n"
        );
        return;
    };
    let started = Instant::now();
    let bot = Arc::new(TestBot::new());
    let base = serve(&bot).await;
    let driver = Driver::start(&chromium.driver);
    let profile = tempfile::tempdir().unwrap();
    let client = open_browser(&chromium, &driver, profile.path()).await;

    // The steps run as their own task so that a failed assertion still closes the browser.
    let steps = tokio::spawn(take_a_handoff(bot, client.clone(), base));
    let outcome = steps.await;
    let _ = client.close().await;
    drop(driver);
    match outcome {
        Ok(()) => eprintln!("browser test took {:.1} s", started.elapsed().as_secs_f64()),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the browser steps did not finish: {error}"),
    }
}

async fn take_a_handoff(bot: Arc<TestBot>, page: Client, base: String) {
    let alice = bot.add_agent("alice", "agent");
    let bob = bot.add_agent("bob", "agent");
    // Two buyers are already waiting: a complaint bob holds, and a broken cup.
    bot.say("web-7c1f", "我要投诉你们，客服一直不回复").await;
    let complaint = bot.handoff_of(&alice, "web-7c1f").await;
    let (status, _) = bot.act(&bob, complaint, "claim", None).await;
    assert_eq!(status, 200);
    bot.say("web-3a9e", "收到的杯子碎了").await;
    bot.say("web-3a9e", ORDER).await;
    bot.send_photo("web-3a9e", "https://img.example.com/cup-crack.jpg")
        .await;
    bot.say("web-3a9e", "2").await;
    let unsure = bot.say("web-9d0b", "杯子上能刻我名字吗").await;
    assert_eq!(unsure["action"], "handoff", "{unsure}");
    bot.clock.advance_s(4 * 60 + 12);

    // Sign in: a wrong token is refused, the right one opens the queue.
    page.set_window_size(1280, 900).await.unwrap();
    page.goto(&format!("{base}/console")).await.unwrap();
    let token_box = page
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Id("token"))
        .await
        .unwrap();
    token_box.send_keys("not-a-token\u{e007}").await.unwrap();
    wait_for_text(&page, "#signin-error", "令牌无效").await;
    token_box.clear().await.unwrap();
    token_box
        .send_keys(&format!("{alice}\u{e007}"))
        .await
        .unwrap();
    wait_for_text(&page, "#who", "alice").await;
    // The page runs under its Content-Security-Policy (no inline script or style): the script
    // file runs (signing in worked) and the style sheet applies.
    let margin = script(
        &page,
        "return getComputedStyle(document.getElementById('cases-form')).marginTop",
    )
    .await;
    assert_eq!(
        margin,
        json!("7.5px"),
        "console.css applies (.5rem of 15px)"
    );
    let queue = wait_for_text(&page, "#queue", "web-3a9e").await;
    assert!(
        queue.find("web-7c1f") < queue.find("web-3a9e"),
        "the complaint comes first: {queue}"
    );
    assert!(queue.contains("bob"), "the holder is shown: {queue}");
    script(&page, "window.stillTheSamePage = true").await;

    // The language toggle relabels the page, and back.
    page.find(Locator::Id("lang-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&page, "header h1", "agent console").await;
    wait_for_text(&page, "#queue", "Complaint").await;
    page.find(Locator::Id("lang-toggle"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&page, "header h1", "客服工作台").await;

    // A new buyer asks the bot, then for a person: the queue shows it without a reload.
    bot.say("web-5f2c", "能开发票吗").await;
    bot.clock.advance_s(20);
    let handed = bot.say("web-5f2c", "转人工").await;
    assert_eq!(handed["state"], "waiting", "{handed}");
    bot.clock.advance_s(95);
    wait_for_text(&page, "#queue", "web-5f2c").await;
    wait_for_text(&page, "#queue", "1分35秒").await;
    save_screenshot(&page, "console-queue.png").await;

    // The complaint is bob's: claiming it shows the refusal. A message the buyer's channel
    // refused for good shows as not delivered, and why.
    let complainer = TestBot::chat("web-7c1f");
    let refused = bot
        .store()
        .post_message(&xiaoer::storage::NewMessage {
            chat: &complainer,
            from: xiaoer::storage::Sender::Agent,
            text: "您好，请问还在吗？",
            at_ms: xiaoer::service::Clock::now_ms(&*bot.clock),
            source_id: None,
            agent: Some("bob"),
            knowledge_version: None,
        })
        .unwrap();
    bot.store().mark_undeliverable(refused, "blocked").unwrap();
    click_ticket(&page, "web-7c1f").await;
    wait_for_text(&page, "#transcript", "我要投诉你们").await;
    wait_for_text(
        &page,
        "#transcript .undelivered",
        "未送达：买家已屏蔽机器人",
    )
    .await;
    click(&page, "claim").await;
    let refusal = wait_for_text(&page, "#action-error", "already held by bob").await;
    assert!(refusal.contains("无法认领"), "{refusal}");

    // Open the new handoff: the transcript, each bot message with topic and confidence.
    click_ticket(&page, "web-5f2c").await;
    let transcript = wait_for_text(&page, "#transcript", "转人工").await;
    assert!(transcript.contains("能开发票吗"), "{transcript}");
    let bot_line = text(&page, "#transcript .msg.bot .who").await;
    assert!(
        bot_line.contains("invoice") && bot_line.contains("置信度"),
        "{bot_line}"
    );
    assert_eq!(
        text(&page, "#action-error").await,
        "",
        "the earlier refusal is cleared"
    );

    // Claim, then reply with Enter: the buyer receives it.
    click(&page, "claim").await;
    wait_for_text(&page, "#detail-state", "您正在处理").await;
    let reply = "您好，我是客服小李，请问有什么可以帮您？";
    let reply_box = page.find(Locator::Id("reply-text")).await.unwrap();
    reply_box
        .send_keys(&format!("{reply}\u{e007}"))
        .await
        .unwrap();
    wait_for_text(&page, "#action-status", "已发送").await;
    let seen = bot.buyer_sees("web-5f2c").await;
    assert_eq!(
        seen.last(),
        Some(&("agent".to_string(), reply.to_string())),
        "{seen:?}"
    );
    wait_for_text(&page, "#transcript .msg.agent", reply).await;
    assert_eq!(
        value_of(&page, "reply-text").await,
        "",
        "a sent reply clears the box"
    );

    // A reply that breaks the phrasing rules is refused with the approved wording; the draft stays.
    let careless = "不好意思，你的包裹明天一定到";
    reply_box.send_keys(careless).await.unwrap();
    click(&page, "reply-send").await;
    let violations = wait_for_text(&page, "#violations", "非常抱歉").await;
    assert!(violations.contains("不好意思"), "{violations}");
    assert!(violations.contains("no_promises"), "{violations}");
    // Each rule says what it asks in the page's language.
    assert!(violations.contains("切勿用“你”"), "{violations}");
    click(&page, "lang-toggle").await;
    wait_for_text(&page, "#violations", "address the buyer as 您").await;
    click(&page, "lang-toggle").await;
    wait_for_text(&page, "#violations", "切勿用“你”").await;
    assert_eq!(value_of(&page, "reply-text").await, careless);
    assert!(
        !bot.buyer_sees("web-5f2c")
            .await
            .iter()
            .any(|(_, t)| t.contains("明天一定到")),
        "nothing was sent"
    );
    // A tall laptop window shows the whole handoff; a phone stacks queue and handoff.
    page.set_window_size(1280, 1560).await.unwrap();
    script(&page, "window.scrollTo(0, 0)").await;
    save_screenshot(&page, "console-handoff.png").await;
    page.set_window_size(400, 860).await.unwrap();
    script(
        &page,
        "document.getElementById('detail-panel').scrollIntoView()",
    )
    .await;
    let too_wide = script(
        &page,
        "const width = document.documentElement.clientWidth; \
         return [...document.querySelectorAll('body *')] \
           .filter(e => e.offsetParent !== null && e.getBoundingClientRect().right > width + 1) \
           .map(e => e.tagName + '#' + e.id + '.' + e.className);",
    )
    .await;
    assert_eq!(too_wide, json!([]), "nothing is wider than a phone");
    save_screenshot(&page, "console-phone.png").await;
    page.set_window_size(1280, 900).await.unwrap();

    // The suggested wording replaces the offending phrase in the draft.
    page.find(Locator::Css("#violations button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(value_of(&page, "reply-text").await.starts_with("非常抱歉"));

    // Hand back: the handoff leaves the queue and the bot answers the buyer again.
    click(&page, "release").await;
    wait_for_text(&page, "#action-status", "已交还机器人").await;
    wait_until(&page, "the handoff to leave the queue", || async {
        !text(&page, "#queue").await.contains("web-5f2c")
    })
    .await;
    let answered = bot.say("web-5f2c", "能开发票吗").await;
    assert_eq!(
        (answered["state"].as_str(), answered["topic"].as_str()),
        (Some("bot"), Some("invoice")),
        "{answered}"
    );

    close_the_broken_cup_case(&bot, &page).await;
    walk_the_other_tabs(&bot, &page).await;
    assert_eq!(
        script(&page, "return window.stillTheSamePage === true").await,
        json!(true),
        "the page was never reloaded"
    );
    too_many_wrong_tokens_are_told_to_wait(&page).await;
}

/// Signed out, a run of wrong tokens from this address ends in the form saying how long to
/// wait (the server's 429 and its Retry-After).
async fn too_many_wrong_tokens_are_told_to_wait(page: &Client) {
    click(page, "sign-out").await;
    let token_box = page.find(Locator::Id("token")).await.unwrap();
    let mut said = String::new();
    for _ in 0..=xiaoer::channels::guard::SIGN_INS.failures {
        script(
            page,
            "document.getElementById('signin-error').textContent = ''",
        )
        .await;
        token_box.clear().await.unwrap();
        token_box.send_keys("not-a-token\u{e007}").await.unwrap();
        wait_until(page, "#signin-error to say why", || async {
            !text(page, "#signin-error").await.is_empty()
        })
        .await;
        said = text(page, "#signin-error").await;
        if said.contains("秒后再试") {
            break;
        }
    }
    assert!(said.contains("请 60 秒后再试"), "{said}");
}

/// Opens the flow's handoff (what it collected, the photo as a link), claims it and closes it
/// with Enter in the outcome box; the buyer is asked to rate and does.
async fn close_the_broken_cup_case(bot: &TestBot, page: &Client) {
    click_ticket(page, "web-3a9e").await;
    wait_for_text(page, "#transcript", "收到的杯子碎了").await;
    let collected = wait_for_text(page, "#collected", ORDER).await;
    assert!(
        collected.contains("换一件新的") && !collected.contains("exchange"),
        "the remedy is shown as the buyer was offered it: {collected}"
    );
    let summary = text(page, "#detail-summary").await;
    assert!(summary.contains("希望 换一件新的"), "{summary}");
    let photo = script(
        page,
        "return [...document.querySelectorAll('#collected a')].map(a => a.href)",
    )
    .await;
    assert_eq!(photo, json!(["https://img.example.com/cup-crack.jpg"]));
    assert!(text(page, "#case").await.contains("商品破损"));
    click(page, "claim").await;
    wait_for_text(page, "#detail-state", "您正在处理").await;
    assert_eq!(value_of(page, "close-responsible").await, "courier");
    page.find(Locator::Id("close-outcome"))
        .await
        .unwrap()
        .send_keys("补发新杯子，快递破损已登记\u{e007}")
        .await
        .unwrap();
    wait_for_text(page, "#action-status", "已结案").await;
    wait_for_text(page, "#detail-state", "已结案").await;
    let rated = bot.say("web-3a9e", "5分").await;
    assert!(crate::support::replies(&rated).contains("感谢"), "{rated}");
}

/// Cases (filtered, exported), unanswered questions, ratings and the knowledge version.
async fn walk_the_other_tabs(bot: &TestBot, page: &Client) {
    tab(page, "cases").await;
    let cases = wait_for_text(page, "#cases-body", "补发新杯子").await;
    assert!(cases.contains("快递") && cases.contains("alice"), "{cases}");
    // The case's kind is named by its flow's title from dialogs/, in the page's language.
    assert!(cases.contains("商品破损"), "{cases}");
    click(page, "lang-toggle").await;
    let english = wait_for_text(page, "#cases-body", "Item arrived damaged").await;
    assert!(english.contains("Exchange for a new one"), "{english}");
    click(page, "lang-toggle").await;
    wait_for_text(page, "#cases-body", "商品破损").await;
    let week = page.find(Locator::Id("cases-week")).await.unwrap();
    week.send_keys("2026-W40\u{e007}").await.unwrap();
    wait_for_text(page, "#cases-body", "没有符合条件的记录").await;
    week.clear().await.unwrap();
    week.send_keys("2026-w48\u{e007}").await.unwrap();
    wait_for_text(page, "#cases-body", "补发新杯子").await;
    click(page, "cases-csv").await;
    wait_for_text(page, "#cases-status", "cases-2026-W48.csv").await;

    tab(page, "unanswered").await;
    wait_for_text(page, "#unanswered", "杯子上能刻我名字吗").await;
    tab(page, "ratings").await;
    let ratings = wait_for_text(page, "#ratings-body", "alice").await;
    assert!(
        ratings.contains("5.00") && ratings.contains("2026-W48"),
        "{ratings}"
    );
    tab(page, "knowledge").await;
    let hash = bot.service.bot().version.hash.clone();
    wait_for_text(page, "#knowledge-version", &hash).await;
    assert_eq!(
        script(
            page,
            "return document.getElementById('reload-banner').hidden"
        )
        .await,
        json!(true),
        "no refused edit, no banner"
    );
    tab(page, "queue").await;
}

async fn tab(page: &Client, view: &str) {
    page.find(Locator::Css(&format!(
        "nav.tabs button[data-view='{view}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
}

async fn script(page: &Client, source: &str) -> Value {
    page.execute(source, vec![])
        .await
        .unwrap_or_else(|e| panic!("{source}: {e}"))
}

/// The rendered text of the first element matching `css` ("" when there is none).
async fn text(page: &Client, css: &str) -> String {
    let found = page
        .execute(
            "const node = document.querySelector(arguments[0]); return node ? node.innerText : '';",
            vec![json!(css)],
        )
        .await
        .unwrap();
    found.as_str().unwrap_or_default().to_string()
}

async fn value_of(page: &Client, id: &str) -> String {
    page.find(Locator::Id(id))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
}

async fn click(page: &Client, id: &str) {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking #{id}: {e}"));
}

/// Clicks the queue entry of a chat.
async fn click_ticket(page: &Client, chat: &str) {
    let xpath = format!("//button[contains(@class, 'ticket')][contains(., '{chat}')]");
    let ticket = page
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no queue entry for {chat}: {e}"));
    ticket.click().await.unwrap();
}

/// Polls until `done` holds; fails after `PATIENCE` with what the page shows.
async fn wait_until<F, Fut>(page: &Client, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = text(page, "body").await;
    panic!("waited {PATIENCE:?} for {what}; the page shows:\n{shown}");
}

/// Waits until the element `css` shows `needle`; returns its text.
async fn wait_for_text(page: &Client, css: &str, needle: &str) -> String {
    let what = format!("{css} to show {needle:?}");
    wait_until(page, &what, || async {
        text(page, css).await.contains(needle)
    })
    .await;
    text(page, css).await
}

/// Saves a PNG of the window in `target/tmp/console-screenshots/`, and in `docs/` when
/// `XIAOER_UPDATE_SCREENSHOTS` is set.
async fn save_screenshot(page: &Client, name: &str) {
    let png = page.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(name), &png).unwrap();
    if std::env::var_os("XIAOER_UPDATE_SCREENSHOTS").is_some() {
        let docs = crate::support::repo_path("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &png).unwrap();
    }
}
