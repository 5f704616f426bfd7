//! The command-line contract other tools rely on.

use std::io::Write;
use std::process::Stdio;

use crate::support::{repo_path, xiaoer_command};

fn xiaoer(args: &[&str], stdin: &[u8]) -> (String, String, bool) {
    let mut child = xiaoer_command(None)
        .args(args)
        .arg("--kb")
        .arg(repo_path("knowledge"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xiaoer runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.success(),
    )
}

#[test]
fn ask_json_answers_every_line_in_order_even_bad_ones() {
    let mut input = Vec::new();
    input.extend_from_slice("能开发票吗\n\n".as_bytes());
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    input.extend_from_slice("x".repeat(100_000).as_bytes());
    input.extend_from_slice("\n转人工\n".as_bytes());
    let (stdout, stderr, ok) = xiaoer(&["ask", "--json"], &input);
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    assert_eq!(lines[0]["topic"], "invoice");
    assert_eq!(lines[0]["action"], "answer");
    assert!(lines[0]["candidates"].as_array().unwrap().len() <= 3);
    assert_eq!(lines[4]["action"], "handoff");
    assert_eq!(
        lines[3]["action"], "handoff",
        "a 100 KB line goes to a person"
    );
    assert!(stderr.contains("line 3"), "{stderr}");
    for line in &lines {
        let confidence = line["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
        assert!(!line["reply"].as_str().unwrap().is_empty());
    }
}

#[test]
fn ask_prints_the_reply() {
    let (stdout, _, ok) = xiaoer(&["ask", "can i get an invoice"], b"");
    assert!(ok);
    assert!(stdout.to_lowercase().contains("invoice"), "{stdout}");
}

#[test]
fn similarity_prints_one_score_per_line() {
    let (stdout, stderr, ok) = xiaoer(
        &["similarity"],
        format!(
            "能开发票吗\t发票怎么开\n能开发票吗\t今天天气不错\nno tab here\n{huge}\t{huge}\n能开发票吗\t发票怎么开\n",
            huge = "发票".repeat(50_000)
        )
        .as_bytes(),
    );
    assert!(ok, "{stderr}");
    let scores: Vec<f64> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(scores.len(), 5);
    assert!(scores[0] > scores[1], "{scores:?}");
    assert!(stderr.contains("line 3"), "{stderr}");
    // A 100 KB pair is refused with a reason, not compared for a minute; the next line is
    // still scored.
    assert_eq!(scores[3], 0.0);
    assert!(
        stderr.contains("line 4: a question longer than"),
        "{stderr}"
    );
    assert_eq!(
        scores[4], scores[0],
        "the same pair scores the same after it"
    );
    assert!(scores[4] > 0.0);
}

#[test]
fn kb_check_passes_the_shipped_knowledge_and_fails_a_missing_folder() {
    let (stdout, _, ok) = xiaoer(&["kb", "check"], b"");
    assert!(ok, "{stdout}");
    let missing = repo_path("no-such-folder");
    let (stdout, _, ok) = xiaoer(&["kb", "check", missing.to_str().unwrap()], b"");
    assert!(!ok);
    assert!(stdout.contains("no-such-folder"), "{stdout}");
}

#[test]
fn chat_keeps_the_conversation() {
    let (stdout, stderr, ok) = xiaoer(&["chat"], "这款保温杯什么材质\n多少钱\n".as_bytes());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[answer price"), "{stdout}");
}
