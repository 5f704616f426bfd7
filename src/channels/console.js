// The agent console's script (served at GET /console.js by src/channels/console.rs; the page
// is src/channels/console.html). A file of its own so the page's Content-Security-Policy
// allows no inline script; event handlers are attached with addEventListener, never inline.
"use strict";

// ---- Words, in Chinese and English ----------------------------------------------------
const WORDS = {
  app_title: ["店小二 · 客服工作台", "xiaoer · agent console"],
  sign_out: ["退出", "Sign out"],
  signin_title: ["客服登录", "Agent sign-in"],
  token_label: ["个人令牌", "Personal token"],
  token_hint: ["令牌由 xiaoer agent add 生成，只显示一次。它只保存在本标签页中。",
    "Your token comes from xiaoer agent add and is shown only once. It is kept in this tab only."],
  sign_in: ["登录", "Sign in"],
  signin_failed: ["令牌无效或已撤销。", "Unknown or revoked token."],
  signin_throttled: ["错误的令牌太多，请 {0} 秒后再试。", "Too many wrong tokens: try again in {0} s."],
  token_empty: ["请输入令牌。", "Enter your token."],
  session_expired: ["登录已失效，请重新登录。", "Your session ended: sign in again."],
  network_error: ["无法连接服务器，正在重试…", "Cannot reach the server; retrying…"],
  signed_in_as: ["{0}（{1}）", "{0} ({1})"],
  role_agent: ["客服", "agent"], role_editor: ["编辑", "editor"],
  sections: ["功能", "Sections"],
  tab_queue: ["转人工队列", "Queue"], tab_unanswered: ["未解决问题", "Unanswered"],
  tab_cases: ["售后记录", "Cases"], tab_ratings: ["满意度", "Ratings"], tab_knowledge: ["知识库", "Knowledge"],
  reload_refused_title: ["知识库的最近一次修改被拒绝，仍在使用上一个有效版本。",
    "The last knowledge edit was refused; the previous valid version keeps serving."],
  see_problems: ["查看问题", "See the problems"],
  queue_title: ["等待处理", "Waiting buyers"],
  queue_hint: ["投诉和情绪激动的买家排在最前，其余按等待时间。每 2 秒自动刷新。",
    "Complaints and upset buyers first, then the longest waiting. Refreshes every 2 seconds."],
  queue_empty: ["暂无等待的买家。", "Nobody is waiting."],
  queue_live: ["队列中有 {0} 个会话。", "{0} chats in the queue."],
  detail_empty: ["从队列选择一个会话。", "Pick a chat from the queue."],
  back_to_queue: ["← 返回队列", "← Back to the queue"],
  claim: ["认领", "Claim"], release: ["交还机器人", "Hand back to the bot"],
  claimed_ok: ["已认领，买家的消息现在只交给您。", "Claimed: the buyer's messages now come to you."],
  claim_refused: ["无法认领：", "Could not claim: "],
  released_ok: ["已交还机器人，买家已收到通知。", "Handed back to the bot; the buyer was told."],
  transcript: ["对话记录", "Transcript"],
  from_buyer: ["买家", "Buyer"], from_bot: ["机器人", "Bot"], from_agent: ["客服 {0}", "Agent {0}"],
  topic: ["主题", "topic"], confidence: ["置信度", "confidence"],
  attachment: ["附件", "attachment"],
  undelivered: ["未送达：{0}", "Not delivered: {0}"],
  undeliverable_blocked: ["买家已屏蔽机器人，无法联系到买家", "the buyer blocked the bot and can't be reached"],
  undeliverable_deactivated: ["买家账号已注销，无法联系到买家", "the buyer's account is deactivated and can't be reached"],
  undeliverable_chat_not_found: ["找不到该会话，无法联系到买家", "Telegram no longer knows this chat; the buyer can't be reached"],
  undeliverable_kicked: ["机器人已被移出该群", "the bot was removed from this group"],
  undeliverable_migrated: ["该群已升级为超级群，请在新群中联系", "the group became a supergroup; reach its members there"],
  undeliverable_forbidden: ["Telegram 拒绝发送，无法联系到买家", "Telegram refuses to deliver; the buyer can't be reached"],
  reply_label: ["回复买家", "Reply to the buyer"],
  enter_hint: ["Enter 发送，Shift+Enter 换行。发送前会检查话术规范。",
    "Enter sends, Shift+Enter starts a new line. Replies are checked against the phrasing rules first."],
  quick_phrases: ["快捷话术", "Quick phrases"], phrase_filter: ["搜索", "Search"],
  phrase_pick: ["话术", "Phrase"], phrase_lang: ["语言", "Language"], insert: ["插入", "Insert"],
  no_phrase_en: ["这条话术没有英文版本。", "This phrase has no English version."],
  send: ["发送", "Send"],
  sent_ok: ["已发送给买家。", "Sent to the buyer."],
  reply_empty: ["回复是空的。", "The reply is empty."],
  violations_title: ["未发送：回复不符合话术规范。请修改后再发送（草稿已保留）。",
    "Not sent: the reply breaks the shop's phrasing rules. Edit it and send again (your draft is kept)."],
  found: ["出现", "Found"], suggested: ["建议改为", "Suggested"],
  no_suggestion: ["（没有固定的替换说法，请改写）", "(no set replacement: rephrase it)"],
  missing_phrase: ["（回复中缺少）", "(missing from the reply)"],
  use_suggestion: ["替换", "Use it"],
  collected: ["流程收集的信息", "What the flow collected"],
  nothing: ["无", "None"],
  candidates: ["机器人考虑过的主题", "Topics the bot considered"],
  this_case: ["本次售后记录", "This case"], earlier_cases: ["该买家以往的售后", "Earlier cases of this buyer"],
  notes: ["交接留言", "Notes from earlier shifts"],
  note_label: ["给下一班留言", "Note for the next shift"], save_note: ["保存留言", "Save note"],
  noted_ok: ["留言已保存。", "Note saved."],
  close_case: ["结案", "Close the case"], outcome: ["处理结果", "Outcome"], responsible: ["责任方", "Responsible"],
  close_submit: ["结案并请买家评价", "Close and ask the buyer to rate"],
  outcome_empty: ["请简要写下处理结果。", "Say in a few words how it was resolved."],
  closed_ok: ["已结案，买家已收到评价邀请。", "Closed; the buyer was asked for a rating."],
  party_shop: ["我方", "Shop"], party_courier: ["快递", "Courier"], party_buyer: ["买家", "Buyer"],
  party_undetermined: ["待定", "Undetermined"],
  waiting_for: ["已等待 {0}", "waiting {0}"],
  held_by: ["{0} 处理中", "held by {0}"], held_by_you: ["您正在处理", "held by you"],
  chat: ["会话", "chat"], created: ["创建于", "created"],
  unanswered_title: ["机器人没能回答的问题", "Questions the bot could not answer"],
  unanswered_hint: ["相似的问题归为一组，次数多的在前；可据此给知识库补充例句。",
    "Similar questions are grouped, the most frequent first: material for new knowledge examples."],
  unanswered_empty: ["没有未解决的问题。", "No unanswered questions."],
  add_example: ["加为此主题的例句", "Add as an example of"],
  example_added: ["已写入知识库并生效。", "Added to the knowledge base; live now."],
  times: ["{0} 次", "{0}×"], last_asked: ["最近一次", "last asked"], examples: ["问法示例", "How buyers asked"],
  refresh: ["刷新", "Refresh"],
  cases_title: ["售后记录", "After-sales cases"], week: ["周", "Week"], kind: ["类型", "Type"],
  all: ["全部", "All"], filter: ["筛选", "Filter"], export_csv: ["导出 CSV", "Export CSV"],
  csv_done: ["已下载 {0}。", "Downloaded {0}."],
  week_invalid: ["周的格式是 2026-W48。", "A week looks like 2026-W48."],
  cases_empty: ["没有符合条件的记录。", "No cases match."],
  col_id: ["编号", "#"], col_created: ["时间", "Created"], col_order: ["订单号", "Order"],
  col_remedy: ["处理方式", "Remedy"], col_status: ["状态", "Status"], col_agent: ["客服", "Agent"],
  col_chat: ["会话", "Chat"], col_description: ["说明与凭证", "Description and evidence"],
  ratings_title: ["买家满意度（1–5 分）", "Buyer satisfaction (1–5)"],
  col_ratings: ["评价数", "Ratings"], col_average: ["平均分", "Average"],
  overall: ["全部", "overall"], ratings_empty: ["还没有评价。", "No ratings yet."],
  knowledge_title: ["知识库状态", "Knowledge base"],
  version: ["正在使用的版本", "Version serving"], entries: ["条目", "Entries"], flows: ["售后流程", "Flows"],
  refused_at: ["被拒绝的修改", "Refused edit"], problems: ["问题", "Problems"],
  no_refusal: ["最近没有被拒绝的修改。", "No edit has been refused."],
  request_failed: ["请求失败（{0}）。", "Request failed ({0})."],
  // Handoff reasons, states, priorities.
  reason_low_confidence: ["机器人没把握", "Bot unsure"],
  reason_asked_for_person: ["买家要求人工", "Asked for a person"],
  reason_complaint: ["投诉", "Complaint"], reason_angry: ["情绪激动", "Upset buyer"],
  reason_flow_decision: ["售后待处理", "After-sales decision"], reason_flow_stuck: ["流程卡住", "Flow stuck"],
  reason_repeated: ["重复提问", "Asked again"], reason_too_long: ["消息过长", "Message too long"],
  state_waiting: ["等待中", "Waiting"], state_claimed: ["处理中", "Claimed"], state_closed: ["已结案", "Closed"],
  state_released: ["已交还机器人", "Back with the bot"], state_cancelled: ["已取消", "Cancelled"],
  priority_urgent: ["紧急", "Urgent"],
  // Cases.
  status_recorded: ["已登记", "Recorded"], status_pending: ["待处理", "Pending"],
  status_abandoned: ["买家中止", "Abandoned"], status_closed: ["已结案", "Closed"],
  field_order: ["订单号", "Order"], field_remedy: ["希望的处理方式", "Remedy asked for"],
  field_photos: ["照片", "Photos"], field_evidence: ["凭证", "Evidence"], field_description: ["描述", "Description"],
};
const LANGS = ["zh", "en"];
let lang = LANGS.includes(localStorage.getItem("xiaoer.lang")) ? localStorage.getItem("xiaoer.lang") : "zh";

/** The word for `key` in the current language, with {0}, {1} … filled in. */
function t(key, ...args) {
  const pair = WORDS[key];
  const text = pair ? pair[LANGS.indexOf(lang)] : key;
  return text.replace(/\{(\d)\}/g, (_, i) => String(args[Number(i)] ?? ""));
}
/** A label for a code the server sends (reason, state, party …); the code itself if unknown. */
function label(prefix, code) {
  if (code === null || code === undefined || code === "") return "—";
  return WORDS[prefix + "_" + code] ? t(prefix + "_" + code) : String(code);
}

// ---- Small DOM helpers: text only, never HTML --------------------------------------------
const $ = (id) => document.getElementById(id);
/** Creates an element; string children become text nodes. */
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && name !== "list") node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
/** A link for an attachment id that is an http(s) URL, else the id as text. */
function attachmentNode(attachment) {
  const id = String(attachment.id ?? "");
  const kind = attachment.kind ? attachment.kind + ": " : "";
  if (/^https?:\/\/\S+$/i.test(id)) {
    return el("span", {}, kind, el("a", { href: id, target: "_blank", rel: "noopener noreferrer" }, id));
  }
  return el("span", {}, kind + id);
}
function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (lang === "zh") return h ? `${h}小时${m}分` : m ? `${m}分${r}秒` : `${r}秒`;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
}
function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
    { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}
function percent(score) {
  return typeof score === "number" ? Math.round(score * 100) + "%" : "";
}
function topicTitle(topic) {
  const entry = state.answersById.get(topic);
  if (!entry) return String(topic);
  const title = lang === "en" && entry.title_en ? entry.title_en : entry.title;
  return title ? `${title} (${topic})` : String(topic);
}
function showText(id, text) { $(id).textContent = text || ""; }

// ---- State and the API -------------------------------------------------------------------
const state = {
  token: sessionStorage.getItem("xiaoer.token") || "",
  me: null,
  view: "queue",
  queue: [],
  seen: new Set(),
  queueLoaded: false,
  openId: null,
  detail: null,
  detailKey: "",
  drafts: new Map(),
  answers: [],
  answersById: new Map(),
  flows: new Map(),
  knowledge: null,
  cases: [],
  kinds: new Set(),
  unanswered: null,
  ratings: null,
  violations: null,
  polling: null,
  running: null,
  again: false,
  ticks: 0,
};

class SignedOut extends Error {}

/** Calls the API as the signed-in agent; a 401 returns to the sign-in form. */
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
  });
  if (response.status === 401) {
    signOut(t("session_expired"));
    throw new SignedOut();
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, ok: response.ok, data };
}
/** The server's own refusal text (a 409 names the agent holding the chat), or the status. */
function failure(result) {
  if (result.data && typeof result.data.error === "string" && result.data.error) return result.data.error;
  return t("request_failed", result.status);
}

// ---- Sign-in -------------------------------------------------------------------------------
/** Signs in; returns "" when signed in, else why not (after too many wrong tokens the server
 *  refuses this address for a while, and says for how long). */
async function signIn(token) {
  const response = await fetch("/api/agent/me", { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (response.status === 429) return t("signin_throttled", response.headers.get("Retry-After") || "60");
  if (!response.ok) return t("signin_failed");
  state.token = token;
  state.me = await response.json();
  sessionStorage.setItem("xiaoer.token", token);
  return "";
}
function signOut(message) {
  stopPolling();
  sessionStorage.removeItem("xiaoer.token");
  Object.assign(state, { token: "", me: null, openId: null, detail: null, detailKey: "", queue: [], queueLoaded: false });
  state.seen.clear();
  $("queue").replaceChildren();
  $("detail").hidden = true;
  $("detail-empty").hidden = false;
  $("app").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("signin").hidden = false;
  showText("signin-error", message || "");
  $("token").value = "";
  $("token").focus();
}
async function enterApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  renderWho();
  showView("queue");
  await loadAnswers();
  await loadFlows();
  await tick();
  startPolling();
}
function renderWho() {
  if (state.me) showText("who", t("signed_in_as", state.me.name, label("role", state.me.role)));
}

// ---- Polling -------------------------------------------------------------------------------
function startPolling() {
  stopPolling();
  state.polling = setInterval(tick, 2000);
}
function stopPolling() {
  if (state.polling) clearInterval(state.polling);
  state.polling = null;
}
/** Refreshes now; a call during a refresh makes that refresh run once more, and waits for it. */
async function tick() {
  if (!state.token) return;
  if (state.running) { state.again = true; return state.running; }
  state.running = (async () => {
    do {
      state.again = false;
      await refreshOnce();
    } while (state.again && state.token);
  })();
  try { await state.running; } finally { state.running = null; }
}
/** One refresh: the queue, the open handoff, and every fifth time the knowledge status. */
async function refreshOnce() {
  try {
    await refreshQueue();
    if (state.openId !== null) await refreshDetail();
    if (state.ticks % 5 === 0) await refreshKnowledge();
    state.ticks += 1;
    showText("queue-error", "");
  } catch (error) {
    if (!(error instanceof SignedOut)) showText("queue-error", t("network_error"));
  }
}

// ---- Queue ---------------------------------------------------------------------------------
async function refreshQueue() {
  const result = await api("GET", "/api/agent/handoffs");
  if (!result.ok) { showText("queue-error", failure(result)); return; }
  state.queue = result.data.handoffs || [];
  renderQueue();
  state.queueLoaded = true;
}
function stateText(handoff) {
  if (handoff.state === "claimed" && handoff.agent) {
    return state.me && handoff.agent === state.me.name ? t("held_by_you") : t("held_by", handoff.agent);
  }
  return label("state", handoff.state);
}
function ticketNode(handoff) {
  const urgent = handoff.priority === "urgent";
  // The queue names only the topics the bot gave a real chance; the handoff lists them all.
  const candidates = (handoff.candidates || []).filter((c) => c.score >= 0.01).slice(0, 3)
    .map((c) => `${topicTitle(c.topic)} ${percent(c.score)}`).join(" · ");
  const button = el("button", {
    type: "button", class: "ticket" + (urgent ? " urgent" : ""),
    dataset: { id: String(handoff.id) },
    "aria-current": String(handoff.id === state.openId),
    onclick: () => openHandoff(handoff.id, true),
  },
  el("span", { class: "line1" },
    urgent ? el("span", { class: "tag urgent" }, label("priority", "urgent")) : null,
    el("strong", { class: "grow" }, label("reason", handoff.reason)),
    el("span", { class: "wait", title: t("waiting_for", duration(handoff.waiting_s)) },
      duration(handoff.waiting_s))),
  el("span", { class: "summary", title: handoff.summary || "" }, handoff.summary || ""),
  el("span", { class: "meta" }, el("span", { class: "tag " + handoff.state }, stateText(handoff)),
    ` #${handoff.id} · ${t("chat")} ${handoff.chat_id}`),
  candidates ? el("span", { class: "meta" }, t("candidates") + ": " + candidates) : null);
  return button;
}
/** Redraws the queue. While its order is unchanged the buttons stay (only their text is
 *  updated), so focus and a click in progress survive the refresh. */
function renderQueue() {
  const list = $("queue");
  const shown = [...list.querySelectorAll(".ticket")].map((node) => node.dataset.id);
  const wanted = state.queue.map((handoff) => String(handoff.id));
  if (shown.length === wanted.length && shown.every((id, i) => id === wanted[i])) {
    state.queue.forEach((handoff, i) => {
      const old = list.children[i].firstElementChild;
      const updated = ticketNode(handoff);
      old.className = updated.className + (old.classList.contains("fresh") ? " fresh" : "");
      old.setAttribute("aria-current", updated.getAttribute("aria-current"));
      old.replaceChildren(...updated.childNodes);
    });
  } else {
    const focusedId = document.activeElement && document.activeElement.classList.contains("ticket")
      ? document.activeElement.dataset.id : null;
    const items = state.queue.map((handoff) => {
      const node = ticketNode(handoff);
      if (state.queueLoaded && !state.seen.has(handoff.id)) node.classList.add("fresh");
      return el("li", {}, node);
    });
    list.replaceChildren(...items);
    if (focusedId) {
      const again = list.querySelector(`.ticket[data-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
  }
  for (const handoff of state.queue) state.seen.add(handoff.id);
  $("queue-empty").hidden = state.queue.length > 0;
  showText("queue-count", String(state.queue.length));
  const live = t("queue_live", state.queue.length);
  if ($("queue-live").textContent !== live) showText("queue-live", live);
  document.title = (state.queue.length ? `(${state.queue.length}) ` : "") + t("app_title");
}

// ---- One handoff ---------------------------------------------------------------------------
async function openHandoff(id, moveFocus) {
  if (state.openId !== null && state.openId !== id) state.drafts.set(state.openId, $("reply-text").value);
  const switched = state.openId !== id;
  state.openId = id;
  if (switched) {
    state.detailKey = "";
    $("reply-text").value = state.drafts.get(id) || "";
    $("note-text").value = "";
    $("close-outcome").value = "";
    delete $("close-responsible").dataset.touched;
    clearViolations();
    showText("action-error", "");
    showText("action-status", "");
  }
  for (const node of document.querySelectorAll(".ticket")) {
    node.setAttribute("aria-current", String(node.dataset.id === String(id)));
  }
  await refreshDetail();
  if (switched && state.detail && state.detail.id === id) {
    const said = (state.detail.transcript || []).filter((m) => m.from === "buyer").map((m) => m.text || "");
    const last = said.length ? said[said.length - 1] : "";
    $("phrase-lang").value = !last || /[\u3400-\u9fff]/.test(last) ? "zh" : "en";
  }
  if (moveFocus) {
    $("detail-title").focus();
    if (window.matchMedia("(max-width: 820px)").matches) $("detail-panel").scrollIntoView();
  }
}
async function refreshDetail() {
  const id = state.openId;
  const result = await api("GET", `/api/agent/handoffs/${encodeURIComponent(id)}`);
  if (id !== state.openId) return;
  if (!result.ok) { showText("action-error", failure(result)); return; }
  const detail = result.data;
  // The waiting time changes every second; everything else only when something happened.
  const key = JSON.stringify({ ...detail, waiting_s: 0 });
  state.detail = detail;
  renderDetailHead(detail);
  if (key !== state.detailKey) {
    state.detailKey = key;
    renderDetailBody(detail);
  }
}
function renderDetailHead(detail) {
  $("detail-empty").hidden = true;
  $("detail").hidden = false;
  showText("detail-title", `#${detail.id} · ${label("reason", detail.reason)} · ${t("chat")} ${detail.chat_id}`);
  const open = detail.state === "waiting" || detail.state === "claimed";
  const mine = detail.state === "claimed" && state.me && detail.agent === state.me.name;
  $("detail-state").replaceChildren(
    detail.priority === "urgent" ? el("span", { class: "tag urgent" }, label("priority", "urgent")) : "",
    " ",
    el("span", { class: "tag " + detail.state }, stateText(detail)),
    " ",
    open ? el("span", { class: "wait" }, t("waiting_for", duration(detail.waiting_s))) : "");
  $("claim").disabled = !open || mine;
  $("release").disabled = !open;
  for (const form of ["reply-form", "close-form"]) {
    for (const control of $(form).querySelectorAll("button, textarea, input, select")) control.disabled = !open;
  }
}
function renderDetailBody(detail) {
  showText("detail-summary", detail.summary || "");
  renderTranscript(detail.transcript || []);
  renderCollected(detail);
  const candidates = (detail.candidates || []).map((c) => `${topicTitle(c.topic)} ${percent(c.score)}`);
  showText("candidates", candidates.length ? candidates.join(" · ") : t("nothing"));
  $("case").replaceChildren(detail.case ? caseFacts(detail.case) : el("p", { class: "empty" }, t("nothing")));
  const earlier = (detail.earlier_cases || []).map((c) => el("li", {}, caseFacts(c)));
  $("earlier-cases").replaceChildren(...(earlier.length ? earlier : [el("li", { class: "empty" }, t("nothing"))]));
  const notes = (detail.notes || []).map((note) => el("li", {},
    el("span", { class: "hint" }, `${note.agent} · ${when(note.at)} · #${note.handoff}`),
    el("p", { class: "note-text" }, note.text)));
  $("notes").replaceChildren(...(notes.length ? notes : [el("li", { class: "empty" }, t("nothing"))]));
  if (detail.case && detail.case.responsible && !$("close-responsible").dataset.touched) {
    $("close-responsible").value = detail.case.responsible;
  }
}
function renderTranscript(messages) {
  const box = $("transcript");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40 || box.childElementCount === 0;
  const items = messages.map((message) => {
    const from = ["buyer", "bot", "agent"].includes(message.from) ? message.from : "bot";
    const who = [from === "agent" ? t("from_agent", message.agent || "") : t("from_" + from), when(message.at)];
    if (from === "bot" && message.topic) who.push(`${t("topic")} ${topicTitle(message.topic)}`);
    if (from === "bot" && typeof message.confidence === "number") who.push(`${t("confidence")} ${percent(message.confidence)}`);
    const attachments = (message.attachments || []).map((a) => el("li", {}, attachmentNode(a)));
    return el("li", { class: "msg " + from, dataset: { from } },
      el("span", { class: "who" }, who.join(" · ")),
      message.text ? el("p", { class: "text" }, message.text) : null,
      attachments.length ? el("ul", { class: "attachments", "aria-label": t("attachment") }, attachments) : null,
      message.undeliverable ? el("p", { class: "undelivered" }, t("undelivered", label("undeliverable", message.undeliverable))) : null);
  });
  box.replaceChildren(...items);
  if (atBottom) box.scrollTop = box.scrollHeight;
}
function renderCollected(detail) {
  const facts = [];
  const kind = detail.case ? detail.case.kind : null;
  for (const [key, value] of Object.entries(detail.collected || {})) {
    facts.push(el("dt", {}, fieldLabel(kind, key)), el("dd", {}, optionLabel(kind, key, value)));
  }
  const evidence = detail.evidence || [];
  if (evidence.length) {
    facts.push(el("dt", {}, t("field_evidence")),
      el("dd", {}, el("ul", { class: "attachments" }, evidence.map((a) => el("li", {}, attachmentNode(a))))));
  }
  $("collected").replaceChildren(...(facts.length ? facts : [el("dd", { class: "empty" }, t("nothing"))]));
}
function caseFacts(record) {
  const rows = [
    ["col_id", `#${record.id} · ${when(record.created_at)}`],
    ["kind", flowTitle(record.kind)],
    ["col_order", record.order],
    ["col_remedy", record.remedy ? optionLabel(record.kind, "remedy", record.remedy) : null],
    ["responsible", label("party", record.responsible)],
    ["col_status", label("status", record.status)],
    ["outcome", record.outcome],
    ["col_agent", record.agent],
    ["field_description", record.description],
  ];
  const facts = [];
  for (const [key, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    facts.push(el("dt", {}, t(key)), el("dd", {}, value));
  }
  if ((record.evidence || []).length) {
    facts.push(el("dt", {}, t("field_evidence")),
      el("dd", {}, el("ul", { class: "attachments" }, record.evidence.map((a) => el("li", {}, attachmentNode(a))))));
  }
  return el("dl", { class: "facts" }, facts);
}

// ---- Actions on the open handoff -----------------------------------------------------------
function actionDone(message) {
  showText("action-error", "");
  showText("action-status", message);
}
async function act(path, body, done, refusedPrefix) {
  showText("action-status", "");
  const result = await api("POST", `/api/agent/handoffs/${state.openId}/${path}`, body);
  if (result.ok) {
    actionDone(done);
  } else {
    showText("action-error", (refusedPrefix || "") + failure(result));
    $("action-error").scrollIntoView({ block: "nearest" });
  }
  await tick();
  return result;
}
async function claim() {
  await act("claim", undefined, t("claimed_ok"), t("claim_refused"));
}
async function release() {
  await act("release", undefined, t("released_ok"));
}
async function sendReply(event) {
  event.preventDefault();
  const text = $("reply-text").value.trim();
  clearViolations();
  if (!text) { showText("action-error", t("reply_empty")); return; }
  showText("action-status", "");
  const id = state.openId;
  const result = await api("POST", `/api/agent/handoffs/${id}/reply`, { text });
  if (result.ok) {
    $("reply-text").value = "";
    state.drafts.delete(id);
    actionDone(t("sent_ok"));
  } else if (result.status === 422 && result.data && Array.isArray(result.data.violations)) {
    showText("action-error", "");
    showViolations(result.data.violations);
  } else {
    showText("action-error", failure(result));
  }
  await tick();
}
function clearViolations() {
  state.violations = null;
  $("violations").hidden = true;
  $("violations").replaceChildren();
}
/** Lists why a reply was refused; kept so a change of language relabels it. */
function showViolations(violations) {
  state.violations = violations;
  const items = violations.map((v) => {
    const found = v.found
      ? el("span", {}, `${t("found")}: `, el("span", { class: "quote", dataset: { role: "found" } }, v.found))
      : el("span", {}, t("missing_phrase"));
    // A replacement may offer alternatives ("尽快安排 / 尽力催促"): each gets its own button.
    const choices = v.replacement ? String(v.replacement).split(" / ").map((c) => c.trim()).filter(Boolean) : [];
    const suggestion = choices.length
      ? el("span", {}, ` → ${t("suggested")}: `,
        el("span", { class: "quote", dataset: { role: "replacement" } }, v.replacement), " ",
        v.found ? choices.map((choice) => el("button", {
          type: "button", class: "link", onclick: () => useSuggestion(v.found, choice),
          "aria-label": `${t("use_suggestion")}: ${choice}`,
        }, choices.length > 1 ? `${t("use_suggestion")}「${choice}」` : t("use_suggestion"))) : null)
      : el("span", { class: "hint" }, " " + t("no_suggestion"));
    const message = lang === "zh" ? v.message_zh || v.message : v.message;
    return el("li", {}, el("strong", {}, message || v.rule), el("span", { class: "hint" }, ` (${v.rule})`),
      el("br"), found, suggestion);
  });
  $("violations").replaceChildren(el("p", { class: "flush" }, el("strong", {}, t("violations_title"))),
    el("ul", {}, items));
  $("violations").hidden = false;
}
function useSuggestion(found, replacement) {
  const box = $("reply-text");
  box.value = box.value.split(found).join(replacement);
  box.focus();
}
async function saveNote(event) {
  event.preventDefault();
  const text = $("note-text").value.trim();
  if (!text) return;
  const result = await act("note", { text }, t("noted_ok"));
  if (result.ok) $("note-text").value = "";
}
async function closeCase(event) {
  event.preventDefault();
  const outcome = $("close-outcome").value.trim();
  if (!outcome) { showText("action-error", t("outcome_empty")); $("close-outcome").focus(); return; }
  const result = await act("close", { outcome, responsible: $("close-responsible").value }, t("closed_ok"));
  if (result.ok) $("close-outcome").value = "";
}

// ---- Quick phrases -------------------------------------------------------------------------
async function loadAnswers() {
  try {
    const result = await api("GET", "/api/agent/answers");
    if (!result.ok) return;
    state.answers = result.data.answers || [];
    state.answersById = new Map(state.answers.map((a) => [a.id, a]));
    renderPhrases();
  } catch (error) {
    if (!(error instanceof SignedOut)) showText("queue-error", t("network_error"));
  }
}
/** The after-sales flows by id, with their titles and options from dialogs/ (a case's kind is
 *  a flow id). */
async function loadFlows() {
  try {
    const result = await api("GET", "/api/agent/flows");
    if (!result.ok) return;
    state.flows = new Map((result.data.flows || []).map((f) => [f.id, f]));
  } catch (error) {
    if (!(error instanceof SignedOut)) showText("queue-error", t("network_error"));
  }
}
/** A flow's title in the page's language; its id when the flow is unknown. */
function flowTitle(id) {
  if (id === null || id === undefined || id === "") return "—";
  const flow = state.flows.get(id);
  if (!flow) return String(id);
  return (lang === "en" && flow.title_en ? flow.title_en : flow.title) || String(id);
}
/** What the buyer picked at a flow's choice step, in words (`exchange` → 换货); a free answer,
 *  or a step of an unknown flow, as it is. */
/** What a flow's step collects, in words (`fault` → 问题描述), from `dialogs/`. */
function fieldLabel(kind, step) {
  const flow = state.flows.get(kind);
  const field = flow && flow.fields && Object.hasOwn(flow.fields, step) ? flow.fields[step] : null;
  return (field && (lang === "en" ? field.en : field.zh)) || label("field", step);
}
function optionLabel(kind, step, value) {
  const flow = state.flows.get(kind);
  const options = flow && flow.options && Object.hasOwn(flow.options, step) ? flow.options[step] : {};
  const option = Object.hasOwn(options, value) ? options[value] : null;
  return (option && (lang === "en" ? option.en : option.zh)) || value;
}
function renderPhrases() {
  const select = $("phrase-select");
  const chosen = select.value;
  const filter = $("phrase-filter").value.trim().toLowerCase();
  const options = state.answers
    .filter((a) => !filter || [a.id, a.title, a.title_en, a.answer].some((s) => (s || "").toLowerCase().includes(filter)))
    .map((a) => el("option", { value: a.id }, (lang === "en" && a.title_en ? a.title_en : a.title || a.id) + ` (${a.id})`));
  select.replaceChildren(...options);
  if (options.some((o) => o.value === chosen)) select.value = chosen;
}
function insertPhrase() {
  const entry = state.answersById.get($("phrase-select").value);
  if (!entry) return;
  const text = $("phrase-lang").value === "en" ? entry.answer_en : entry.answer;
  if (!text) { showText("action-error", t("no_phrase_en")); return; }
  const box = $("reply-text");
  const start = box.selectionStart ?? box.value.length, end = box.selectionEnd ?? box.value.length;
  box.value = box.value.slice(0, start) + text + box.value.slice(end);
  box.focus();
  box.selectionStart = box.selectionEnd = start + text.length;
}

// ---- Other views ---------------------------------------------------------------------------
function showView(view) {
  state.view = view;
  for (const button of document.querySelectorAll("nav.tabs button")) {
    if (button.dataset.view === view) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const name of ["queue", "unanswered", "cases", "ratings", "knowledge"]) {
    $("view-" + name).hidden = name !== view;
  }
  renderKnowledge();
  const load = { unanswered: loadUnanswered, cases: loadCases, ratings: loadRatings, knowledge: refreshKnowledge }[view];
  if (load) load().catch(() => {});
}
async function loadUnanswered() {
  const result = await api("GET", "/api/agent/unanswered");
  if (!result.ok) { showText("unanswered-error", failure(result)); return; }
  showText("unanswered-error", "");
  state.unanswered = result.data.groups || [];
  renderUnanswered();
}
function renderUnanswered() {
  if (!state.unanswered) return;
  const items = state.unanswered.map((group) => {
    const candidates = (group.candidates || []).map((c) => `${topicTitle(c.topic)} ${percent(c.score)}`).join(" · ");
    return el("li", {},
      el("div", { class: "row" }, el("span", { class: "count" }, t("times", group.count)), el("strong", { class: "grow" }, group.text)),
      el("span", { class: "hint" }, `${t("last_asked")} ${when(group.last_at)}` + (candidates ? ` · ${t("candidates")}: ${candidates}` : "")),
      (group.examples || []).length > 1
        ? el("details", {}, el("summary", {}, t("examples")), el("ul", {}, group.examples.map((e) => el("li", {}, e))))
        : null,
      state.me && state.me.role === "editor" ? exampleForm(group) : null);
  });
  $("unanswered").replaceChildren(...(items.length ? items : [el("li", { class: "empty" }, t("unanswered_empty"))]));
}
/** Editors teach the bot: the group's question becomes an example of the chosen entry. */
function exampleForm(group) {
  const choices = state.answers.map((a) => el("option", { value: a.id }, `${lang === "en" && a.title_en ? a.title_en : a.title} (${a.id})`));
  const select = el("select", { "aria-label": t("add_example") }, choices);
  const first = (group.candidates || [])[0];
  if (first) select.value = first.topic;
  const status = el("span", { class: "hint", role: "status" });
  const submit = async (event) => {
    event.preventDefault();
    const result = await api("POST", "/api/agent/examples", { entry: select.value, text: group.text });
    status.textContent = result.ok ? t("example_added") : failure(result);
    if (result.ok) loadUnanswered().catch(() => {});
  };
  return el("form", { class: "row", onsubmit: submit },
    el("button", { type: "submit", class: "secondary" }, t("add_example")), select, status);
}
function caseQuery() {
  const params = new URLSearchParams();
  const week = $("cases-week").value.trim().toUpperCase();
  if (week) params.set("week", week);
  if ($("cases-kind").value) params.set("kind", $("cases-kind").value);
  if ($("cases-responsible").value) params.set("responsible", $("cases-responsible").value);
  return params.toString();
}
function weekIsValid() {
  const week = $("cases-week").value.trim().toUpperCase();
  if (week && !/^\d{4}-W\d{2}$/.test(week)) { showText("cases-error", t("week_invalid")); return false; }
  return true;
}
async function loadCases() {
  if (!weekIsValid()) return;
  const query = caseQuery();
  const result = await api("GET", "/api/agent/cases" + (query ? "?" + query : ""));
  if (!result.ok) { showText("cases-error", failure(result)); return; }
  showText("cases-error", "");
  state.cases = result.data.cases || [];
  for (const record of state.cases) state.kinds.add(record.kind);
  renderCases();
}
function renderKindOptions() {
  const select = $("cases-kind");
  const chosen = select.value;
  const kinds = [...new Set([...state.flows.keys(), ...state.kinds])].sort();
  select.replaceChildren(el("option", { value: "" }, t("all")),
    ...kinds.map((kind) => el("option", { value: kind }, flowTitle(kind))));
  select.value = chosen;
}
function renderCases() {
  renderKindOptions();
  const rows = state.cases.map((c) => el("tr", {},
    el("td", { class: "num" }, String(c.id)), el("td", {}, c.week || ""), el("td", {}, when(c.created_at)),
    el("td", {}, flowTitle(c.kind)), el("td", {}, c.order || ""),
    el("td", {}, c.remedy ? optionLabel(c.kind, "remedy", c.remedy) : ""), el("td", {}, label("party", c.responsible)),
    el("td", {}, label("status", c.status)), el("td", {}, c.outcome || ""), el("td", {}, c.agent || ""),
    el("td", {}, c.chat_id || ""),
    el("td", {}, c.description || "", (c.evidence || []).map((a) => el("div", {}, attachmentNode(a))))));
  $("cases-body").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colSpan: 12, class: "empty" }, t("cases_empty")))]));
}
async function exportCsv() {
  if (!weekIsValid()) return;
  const query = caseQuery();
  try {
    const response = await fetch("/api/agent/cases.csv" + (query ? "?" + query : ""),
      { headers: { Authorization: "Bearer " + state.token }, cache: "no-store" });
    if (response.status === 401) { signOut(t("session_expired")); return; }
    if (!response.ok) { showText("cases-error", t("request_failed", response.status)); return; }
    const blob = await response.blob();
    const name = "cases" + ($("cases-week").value.trim() ? "-" + $("cases-week").value.trim().toUpperCase() : "") + ".csv";
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    showText("cases-error", "");
    showText("cases-status", t("csv_done", name));
  } catch (_) {
    showText("cases-error", t("network_error"));
  }
}
async function loadRatings() {
  const result = await api("GET", "/api/agent/ratings");
  if (!result.ok) { showText("ratings-error", failure(result)); return; }
  showText("ratings-error", "");
  state.ratings = result.data.agents || [];
  renderRatings();
}
function renderRatings() {
  if (!state.ratings) return;
  const rows = [];
  for (const agent of state.ratings) {
    rows.push(el("tr", { class: "total" }, el("td", {}, agent.agent), el("td", {}, t("overall")),
      el("td", { class: "num" }, String(agent.ratings)), el("td", { class: "num" }, Number(agent.average).toFixed(2))));
    for (const week of agent.weeks || []) {
      rows.push(el("tr", {}, el("td", {}, ""), el("td", {}, week.week),
        el("td", { class: "num" }, String(week.ratings)), el("td", { class: "num" }, Number(week.average).toFixed(2))));
    }
  }
  $("ratings-body").replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colSpan: 4, class: "empty" }, t("ratings_empty")))]));
}
async function refreshKnowledge() {
  const result = await api("GET", "/api/agent/knowledge");
  if (!result.ok) { showText("knowledge-error", failure(result)); return; }
  showText("knowledge-error", "");
  state.knowledge = result.data;
  renderKnowledge();
}
function renderKnowledge() {
  const knowledge = state.knowledge;
  if (!knowledge) return;
  const version = knowledge.version || {};
  $("knowledge-version").replaceChildren(
    el("dt", {}, t("version")), el("dd", {}, el("code", {}, version.hash || "—")),
    el("dt", {}, t("entries")), el("dd", {}, String(version.entries ?? "—")),
    el("dt", {}, t("flows")), el("dd", {}, String(version.flows ?? "—")));
  const refused = knowledge.last_refused_reload;
  if (refused) {
    const at = typeof refused.at_ms === "number" ? when(new Date(refused.at_ms).toISOString()) : "";
    $("knowledge-refused").replaceChildren(el("div", { class: "banner spaced" },
      el("strong", {}, t("reload_refused_title")),
      el("span", {}, `${t("refused_at")}: ${refused.hash || ""} · ${at}`),
      el("h3", {}, t("problems")), el("pre", { class: "problems" }, refused.problems || "")));
    showText("reload-banner-text", `${t("refused_at")}: ${refused.hash || ""} · ${at}`);
  } else {
    $("knowledge-refused").replaceChildren(el("p", { class: "status" }, t("no_refusal")));
  }
  // The knowledge view shows the same problems in full.
  $("reload-banner").hidden = !refused || state.view === "knowledge";
}

// ---- Language ------------------------------------------------------------------------------
function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
  const toggle = $("lang-toggle");
  toggle.textContent = lang === "zh" ? "English" : "中文";
  toggle.lang = lang === "zh" ? "en" : "zh-CN";
  toggle.setAttribute("aria-label", lang === "zh" ? "Switch to English" : "切换到中文");
  document.title = t("app_title");
  $("phrase-lang").value = lang;
  renderWho();
  renderPhrases();
  renderQueue();
  if (state.detail) { renderDetailHead(state.detail); renderDetailBody(state.detail); }
  if (state.violations) showViolations(state.violations);
  renderUnanswered();
  renderRatings();
  if (state.cases.length || !$("view-cases").hidden) renderCases();
  renderKnowledge();
}

// ---- Wiring --------------------------------------------------------------------------------
/** Enter submits a textarea's form, Shift+Enter adds a line; an IME composition is left alone. */
function enterSubmits(textarea) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      textarea.form.requestSubmit();
    }
  });
}
$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  if (!token) { showText("signin-error", t("token_empty")); return; }
  try {
    const refused = await signIn(token);
    showText("signin-error", refused);
    if (!refused) await enterApp();
  } catch (_) {
    showText("signin-error", t("network_error"));
  }
});
$("sign-out").addEventListener("click", () => signOut(""));
$("lang-toggle").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("xiaoer.lang", lang);
  applyLanguage();
});
for (const button of document.querySelectorAll("nav.tabs button")) {
  button.addEventListener("click", () => showView(button.dataset.view));
}
$("reload-banner-open").addEventListener("click", () => showView("knowledge"));
$("claim").addEventListener("click", () => claim().catch(() => {}));
$("release").addEventListener("click", () => release().catch(() => {}));
$("reply-form").addEventListener("submit", (event) => sendReply(event).catch(() => {}));
$("note-form").addEventListener("submit", (event) => saveNote(event).catch(() => {}));
$("close-form").addEventListener("submit", (event) => closeCase(event).catch(() => {}));
$("reply-text").addEventListener("input", () => { if (state.openId !== null) state.drafts.set(state.openId, $("reply-text").value); });
$("close-responsible").addEventListener("change", () => { $("close-responsible").dataset.touched = "1"; });
enterSubmits($("reply-text"));
enterSubmits($("note-text"));
$("phrase-filter").addEventListener("input", renderPhrases);
$("phrase-filter").addEventListener("keydown", (event) => { if (event.key === "Enter") event.preventDefault(); });
$("phrase-insert").addEventListener("click", insertPhrase);
$("back-to-queue").addEventListener("click", () => {
  const ticket = document.querySelector(`.ticket[data-id="${state.openId}"]`) || $("queue-title");
  $("view-queue").scrollIntoView();
  if (ticket.focus) ticket.focus();
});
$("cases-form").addEventListener("submit", (event) => { event.preventDefault(); loadCases().catch(() => {}); });
$("cases-csv").addEventListener("click", () => exportCsv());
$("unanswered-refresh").addEventListener("click", () => loadUnanswered().catch(() => {}));
$("ratings-refresh").addEventListener("click", () => loadRatings().catch(() => {}));

applyLanguage();
(async () => {
  if (state.token) {
    try {
      if (!(await signIn(state.token))) { await enterApp(); return; }
    } catch (_) { /* fall through to the form */ }
  }
  signOut(state.token ? t("session_expired") : "");
})();
