//! Matching quality on every shop the repository holds, and on real buyers: the figures of
//! issue 14 per shop and split, with a reliability table (confidence band → share right).
//!
//!     cargo run --release --example quality                      # tuning splits + real buyers
//!     cargo run --release --example quality -- --misses          # … and what they missed
//!     cargo run --release --example quality -- --heldout         # the report: held-out splits too
//!     cargo run --release --example quality -- --real FILE       # another real-buyer set
//!
//! Shops: the sample (`knowledge/`, `tests/data/eval.jsonl`) and each `tests/shops/NAME/` with
//! `knowledge/` and `eval.jsonl`. Real buyers: `../shared/data/jddc/dev.jsonl` (JD customers,
//! labelled with the sample shop's topics; development only: its text never enters the repo).
//! Held-out misses are never printed: a held-out split is read for its figures only.

use std::path::{Path, PathBuf};

#[path = "support/shops.rs"]
mod shops;

use xiaoer::config::Settings;
use xiaoer::engine::Engine;
use xiaoer::eval::{parse_cases, Case, Report};

struct Set {
    name: String,
    knowledge: PathBuf,
    cases: Vec<Case>,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let heldout = args.iter().any(|a| a == "--heldout");
    let misses = args.iter().any(|a| a == "--misses");
    let real = args
        .iter()
        .position(|a| a == "--real")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data/jddc/dev.jsonl"));
    // Thresholds as `xiaoer serve` reads them (XIAOER_ANSWER_THRESHOLD … override).
    let settings = Settings::load(std::path::Path::new("xiaoer.toml"))?;

    let mut sets = Vec::new();
    for (shop, knowledge, eval) in shops::shop_files()? {
        let cases = read_cases(&eval)?;
        let mut splits = vec!["tune"];
        if heldout {
            splits.push("heldout");
        }
        for split in splits {
            sets.push(Set {
                name: format!("{shop} {split}"),
                knowledge: knowledge.clone(),
                cases: cases
                    .iter()
                    .filter(|c| c.split.as_deref() == Some(split))
                    .cloned()
                    .collect(),
            });
        }
    }
    if real.exists() {
        sets.push(Set {
            name: "real buyers (JD dev)".into(),
            knowledge: PathBuf::from("knowledge"),
            cases: read_cases(&real)?,
        });
    } else {
        eprintln!("{}: not found; real buyers skipped", real.display());
    }

    println!(
        "{:<24} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>6}",
        "set", "n", "prec", "cover", "h.rec", "top1", "top3", "clarify", "cl.help", "ans|cl"
    );
    let mut engines: Vec<(PathBuf, Engine)> = Vec::new();
    for set in &sets {
        if !engines.iter().any(|(k, _)| *k == set.knowledge) {
            let engine = Engine::load(&set.knowledge, settings.thresholds)?;
            engines.push((set.knowledge.clone(), engine));
        }
        let engine = &engines.iter().find(|(k, _)| *k == set.knowledge).unwrap().1;
        let mut report = Report::default();
        for case in &set.cases {
            report.add(case, &engine.ask(&case.text));
        }
        println!(
            "{:<24} {:>5} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>7.3} {:>7.3} {:>6.3}",
            set.name,
            report.cases,
            report.precision(),
            report.coverage(),
            report.handoff_recall(),
            report.top1(),
            report.top3(),
            report.clarify_rate(),
            report.clarify_helped(),
            report.answered_or_clarified_right()
        );
        let bands: Vec<String> = report
            .reliability
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(band, (n, right))| format!("{:.1}:{right}/{n}", band as f32 / 10.0))
            .collect();
        println!("{:<24} reliability {}", "", bands.join("  "));
        if misses && !set.name.ends_with("heldout") {
            for miss in &report.misses {
                println!(
                    "    expect {:<20} got {:?} {} {:.2}  {}",
                    miss.expect,
                    miss.action,
                    miss.topic.as_deref().unwrap_or("-"),
                    miss.confidence,
                    miss.text
                );
            }
        }
    }
    Ok(())
}

fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let (cases, problems) = parse_cases(&std::fs::read_to_string(path)?);
    anyhow::ensure!(problems.is_empty(), "{}: {problems:?}", path.display());
    Ok(cases)
}
