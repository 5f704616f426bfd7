//! The command-line faces: `ask`, `chat` (a terminal REPL), `similarity`, `eval`, `kb check`,
//! `kb diff`.
//! Each reads lines as bytes and decodes them lossily, so invalid UTF-8 in one line is
//! reported and that line still gets its output: no line is ever lost.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::audit;
use crate::bot::Bot;
use crate::config::Thresholds;
use crate::conversation::{self, Conversation, Inbound};
use crate::engine::{too_long_to_read, Considered, Decision, Engine, Reply, MAX_MESSAGE_CHARS};
use crate::eval::{self, Report};
use crate::hours::ServiceHours;
use crate::knowledge::{self, Diagnostic, KnowledgeBase};

/// One line of `xiaoer ask --json` output.
#[derive(Serialize)]
struct AskLine<'a> {
    text: &'a str,
    action: Decision,
    topic: Option<&'a str>,
    confidence: f32,
    candidates: &'a [Considered],
    reply: &'a str,
}

/// Reads stdin line by line; returns each line decoded, noting invalid UTF-8 on stderr.
fn for_each_line(
    input: impl BufRead,
    mut each: impl FnMut(usize, String) -> Result<()>,
) -> Result<()> {
    for (number, bytes) in input.split(b'\n').enumerate() {
        let mut bytes = bytes.context("reading standard input")?;
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => {
                eprintln!(
                    "line {}: not valid UTF-8; unreadable bytes replaced",
                    number + 1
                );
                String::from_utf8_lossy(error.as_bytes()).into_owned()
            }
        };
        each(number + 1, text)?;
    }
    Ok(())
}

/// `xiaoer ask QUESTION`: prints the reply.
pub fn ask_one(engine: &Engine, question: &str) {
    println!("{}", engine.ask(question).reply);
}

/// `xiaoer ask --json`: one JSON object per stdin line, in order.
pub fn ask_json(engine: &Engine, input: impl BufRead, mut output: impl Write) -> Result<()> {
    for_each_line(input, |_, text| {
        let reply = engine.ask(&text);
        let line = AskLine {
            text: &text,
            action: reply.action,
            topic: reply.topic.as_ref().map(|t| t.as_str()),
            confidence: round(reply.confidence),
            candidates: &reply
                .candidates
                .iter()
                .map(|c| Considered {
                    topic: c.topic.clone(),
                    score: round(c.score),
                })
                .collect::<Vec<_>>(),
            reply: &reply.reply,
        };
        serde_json::to_writer(&mut output, &line)?;
        writeln!(output)?;
        Ok(())
    })?;
    output.flush()?;
    Ok(())
}

/// `xiaoer chat`: a conversation in the terminal through the same conversation engine as
/// every channel (flows included), kept in memory. Handoffs are announced, not queued.
pub fn chat(
    bot: &Bot,
    hours: &ServiceHours,
    input: impl BufRead,
    mut output: impl Write,
    interactive: bool,
) -> Result<()> {
    let mut conversation = Conversation::default();
    if interactive {
        writeln!(output, "店小二 — type a question (Ctrl-D to quit)")?;
        write!(output, "> ")?;
        output.flush()?;
    }
    for_each_line(input, |_, text| {
        let inbound = Inbound {
            text,
            attachments: Vec::new(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let outcome = conversation::handle(bot, hours, &conversation, &inbound);
        let trace = &outcome.trace;
        let topic = trace.topic.as_deref().unwrap_or("-");
        writeln!(
            output,
            "[{} {topic} {:.2}] ({})",
            trace.act.as_str(),
            trace.confidence,
            outcome.conversation.state.name()
        )?;
        for reply in &outcome.replies {
            writeln!(output, "{reply}")?;
        }
        conversation = outcome.conversation;
        if interactive {
            write!(output, "> ")?;
        }
        output.flush()?;
        Ok(())
    })
}

/// `xiaoer similarity`: `a<TAB>b` lines in, one score per line out.
pub fn similarity(engine: &Engine, input: impl BufRead, mut output: impl Write) -> Result<()> {
    let mut pairs = Vec::new();
    for_each_line(input, |number, text| {
        let pair = match text.split_once('\t') {
            // The edit distance grows with the product of the lengths: two 100 KB questions
            // would take a minute, and the matcher reads no message that long anyway.
            Some((a, b)) if too_long_to_read(a) || too_long_to_read(b) => {
                eprintln!(
                    "line {number}: a question longer than {MAX_MESSAGE_CHARS} characters \
                     is not compared; scored 0"
                );
                (String::new(), String::new())
            }
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => {
                eprintln!("line {number}: expected two questions separated by a tab; scored 0");
                (String::new(), String::new())
            }
        };
        pairs.push(pair);
        Ok(())
    })?;
    for score in engine.similarity_scores(&pairs) {
        writeln!(output, "{:.4}", score)?;
    }
    output.flush()?;
    Ok(())
}

/// `xiaoer eval FILE [--split tune|heldout|all]`: runs one split (tune by default) and prints
/// its figures, the reliability table and, for tuning questions only, the misses: a held-out
/// split is read for its figures, never to look at what it missed.
pub fn eval(engine: &Engine, file: &Path, split: &str, mut output: impl Write) -> Result<Report> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (cases, problems) = eval::parse_cases(&text);
    for problem in &problems {
        eprintln!("{}: {problem}", file.display());
    }
    let mut report = Report::default();
    let mut tuning_misses = Report::default();
    for case in cases.iter().filter(|c| in_split(c, split)) {
        let reply = engine.ask(&case.text);
        report.add(case, &reply);
        if case.split.as_deref() != Some("heldout") {
            tuning_misses.add(case, &reply);
        }
    }
    writeln!(output, "cases            {}", report.cases)?;
    writeln!(
        output,
        "precision        {:.3}  (answered {} of which correct {})",
        report.precision(),
        report.answered,
        report.answered_correctly
    )?;
    writeln!(
        output,
        "coverage         {:.3}  (in scope {} answered {})",
        report.coverage(),
        report.in_scope,
        report.in_scope_answered
    )?;
    writeln!(
        output,
        "handoff recall   {:.3}  (handoff expected {} handed off {})",
        report.handoff_recall(),
        report.handoff_expected,
        report.handed_off_when_expected
    )?;
    writeln!(
        output,
        "right topic      first {:.3}, in the first three {:.3}",
        report.top1(),
        report.top3()
    )?;
    writeln!(
        output,
        "clarified        {:.3} of questions; the right topic offered for {:.3} of those not answered",
        report.clarify_rate(),
        report.clarify_helped()
    )?;
    writeln!(
        output,
        "answered or clarified with the right topic  {:.3}",
        report.answered_or_clarified_right()
    )?;
    writeln!(output, "reliability (confidence → the best topic right):")?;
    for (band, (n, right)) in report.reliability.iter().enumerate() {
        if *n > 0 {
            writeln!(
                output,
                "  {:.1}–{:.1}  {right:>4}/{n:<4} {:.2}",
                band as f32 / 10.0,
                (band + 1) as f32 / 10.0,
                *right as f64 / *n as f64
            )?;
        }
    }
    if !tuning_misses.misses.is_empty() {
        writeln!(output, "misses (tuning questions only):")?;
    }
    for miss in &tuning_misses.misses {
        let topic = miss.topic.as_deref().unwrap_or("-");
        writeln!(
            output,
            "  expect {:<20} got {:?} {topic} {:.2}  {}",
            miss.expect, miss.action, miss.confidence, miss.text
        )?;
    }
    Ok(report)
}

/// A question of `split` (`tune`, `heldout` or `all`); a question without a split counts as
/// a tuning question.
fn in_split(case: &eval::Case, split: &str) -> bool {
    split == "all" || case.split.as_deref().unwrap_or("tune") == split
}

/// `xiaoer kb check DIR`: lists every problem of the knowledge base and of the dialog flows
/// as `file:line: message`; false when any. A knowledge base that loads cleanly is then built
/// and audited (`audit::check`).
pub fn kb_check(
    dir: &Path,
    dialogs: &Path,
    thresholds: Thresholds,
    json: bool,
    mut output: impl Write,
) -> Result<bool> {
    let (knowledge_base, flows, mut diagnostics) = crate::bot::check_dirs(dir, dialogs);
    let n_entries = knowledge_base.entries.len();
    let n_products = knowledge_base.catalog.product.len();
    let n_flows = flows.flows.len();
    if diagnostics.is_empty() {
        let engine = Engine::build(knowledge_base, thresholds)
            .with_context(|| format!("building the index of {}", dir.display()))?;
        diagnostics = audit::check(&engine);
    }
    if json {
        let listing: Vec<_> = diagnostics
            .iter()
            .map(|d| serde_json::json!({"file": d.location.file, "line": d.location.line, "message": d.message}))
            .collect();
        writeln!(output, "{}", serde_json::Value::Array(listing))?;
    } else if diagnostics.is_empty() {
        writeln!(
            output,
            "{}: {n_entries} entries, {n_products} products; {}: {n_flows} flows — no problems found",
            dir.display(),
            dialogs.display(),
        )?;
    } else {
        print_diagnostics(&diagnostics, &mut output)?;
    }
    Ok(diagnostics.is_empty())
}

/// `xiaoer kb diff OLD NEW`: what changes for buyers between two knowledge bases: the entries
/// added, removed or edited, each question of the evaluation set whose reply changes, and the
/// figures of both. False (nothing compared) when either knowledge base has a problem.
pub fn kb_diff(
    old_dir: &Path,
    new_dir: &Path,
    eval_file: &Path,
    thresholds: Thresholds,
    mut output: impl Write,
) -> Result<bool> {
    let old = build_valid(old_dir, thresholds, &mut output)?;
    let new = build_valid(new_dir, thresholds, &mut output)?;
    let (Some(old), Some(new)) = (old, new) else {
        return Ok(false);
    };
    let text = std::fs::read_to_string(eval_file)
        .with_context(|| format!("reading {}", eval_file.display()))?;
    let (cases, problems) = eval::parse_cases(&text);
    for problem in &problems {
        eprintln!("{}: {problem}", eval_file.display());
    }
    let entry_changes = entry_changes(old.knowledge_base(), new.knowledge_base());
    writeln!(output, "entries: {} changed", entry_changes.len())?;
    for change in &entry_changes {
        writeln!(output, "  {change}")?;
    }
    // Tuning questions only: an editor tunes on them, so the held-out split stays unseen.
    let cases: Vec<&eval::Case> = cases.iter().filter(|c| in_split(c, "tune")).collect();
    let (mut old_report, mut new_report) = (Report::default(), Report::default());
    let mut n_changed = 0;
    writeln!(output, "tuning questions answered differently:")?;
    for case in cases.iter().copied() {
        let (old_reply, new_reply) = (old.ask(&case.text), new.ask(&case.text));
        old_report.add(case, &old_reply);
        new_report.add(case, &new_reply);
        let same_outcome =
            old_reply.action == new_reply.action && old_reply.topic == new_reply.topic;
        if same_outcome && old_reply.reply == new_reply.reply {
            continue;
        }
        n_changed += 1;
        let note = if same_outcome {
            "  (reply text changed)"
        } else {
            ""
        };
        writeln!(
            output,
            "  {:?}  old: {} → new: {}{note}",
            case.text,
            outcome(&old_reply),
            outcome(&new_reply)
        )?;
    }
    writeln!(
        output,
        "{} tuning questions, {n_changed} changed",
        cases.len()
    )?;
    print_figures(&old_report, &new_report, &mut output)?;
    Ok(true)
}

/// Precision, coverage and handoff recall of two runs, side by side.
fn print_figures(old: &Report, new: &Report, output: &mut impl Write) -> Result<()> {
    writeln!(output, "                 old     new")?;
    for (name, figure) in [
        ("precision", Report::precision as fn(&Report) -> f64),
        ("coverage", Report::coverage),
        ("handoff recall", Report::handoff_recall),
    ] {
        writeln!(output, "{name:<16} {:.3}   {:.3}", figure(old), figure(new))?;
    }
    Ok(())
}

/// The engine over `dir`, or `None` after printing the knowledge base's problems.
fn build_valid(
    dir: &Path,
    thresholds: Thresholds,
    output: &mut impl Write,
) -> Result<Option<Engine>> {
    let (knowledge_base, diagnostics) = knowledge::load_dir(dir);
    if !diagnostics.is_empty() {
        writeln!(output, "{}: not a valid knowledge base", dir.display())?;
        print_diagnostics(&diagnostics, output)?;
        return Ok(None);
    }
    let engine = Engine::build(knowledge_base, thresholds)
        .with_context(|| format!("building the index of {}", dir.display()))?;
    Ok(Some(engine))
}

/// `answer return_howto (0.93)`.
fn outcome(reply: &Reply) -> String {
    let action = format!("{:?}", reply.action).to_lowercase();
    let topic = reply.topic.as_ref().map(|t| t.as_str()).unwrap_or("-");
    format!("{action} {topic} ({:.2})", reply.confidence)
}

/// One line per entry added (`+`), removed (`-`) or edited (`~`, naming the fields buyers can
/// notice), by id.
fn entry_changes(old: &KnowledgeBase, new: &KnowledgeBase) -> Vec<String> {
    let mut changes = Vec::new();
    for entry in &old.entries {
        let Some(edited) = new.entry(entry.id.as_str()) else {
            changes.push(format!("- {} ({})", entry.id, entry.title));
            continue;
        };
        let mut fields: Vec<String> = [
            (
                "title",
                entry.title != edited.title || entry.title_en != edited.title_en,
            ),
            ("action", entry.action != edited.action),
            ("answer", entry.answer != edited.answer),
            ("answer_en", entry.answer_en != edited.answer_en),
            ("keywords", entry.keywords != edited.keywords),
            ("triggers", entry.triggers != edited.triggers),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_string())
        .collect();
        let added = edited
            .examples
            .iter()
            .filter(|e| !entry.examples.contains(e));
        let removed = entry
            .examples
            .iter()
            .filter(|e| !edited.examples.contains(e));
        let (n_added, n_removed) = (added.count(), removed.count());
        if n_added + n_removed > 0 {
            fields.push(format!("examples (+{n_added} −{n_removed})"));
        }
        if !fields.is_empty() {
            changes.push(format!("~ {}: {}", entry.id, fields.join(", ")));
        }
    }
    for entry in &new.entries {
        if old.entry(entry.id.as_str()).is_none() {
            changes.push(format!("+ {} ({})", entry.id, entry.title));
        }
    }
    changes
}

fn print_diagnostics(diagnostics: &[Diagnostic], output: &mut impl Write) -> Result<()> {
    for diagnostic in diagnostics {
        writeln!(output, "{diagnostic}")?;
    }
    writeln!(output, "{} problem(s) found", diagnostics.len())?;
    Ok(())
}

fn round(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}
