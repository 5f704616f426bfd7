//! How fast the matcher is: knowledge-base load + index build time, and per-question latency
//! over the evaluation questions, beside a naive baseline (strsim against every example
//! question) run in the same process.
//!
//!     cargo run --release --example speed

use std::path::Path;
use std::time::{Duration, Instant};

use xiaoer::config::Settings;
use xiaoer::engine::Engine;
use xiaoer::eval::parse_cases;

fn main() -> anyhow::Result<()> {
    let settings = Settings::default();
    let started = Instant::now();
    let engine = Engine::load(Path::new(&settings.kb), settings.thresholds)?;
    let load = started.elapsed();
    let knowledge_base = engine.knowledge_base();
    let n_examples: usize = knowledge_base
        .entries
        .iter()
        .map(|e| e.examples.len())
        .sum();
    println!(
        "load + index build: {:.1} ms ({} entries, {} examples)",
        ms(load),
        knowledge_base.entries.len(),
        n_examples
    );

    let (cases, _) = parse_cases(&std::fs::read_to_string("tests/data/eval.jsonl")?);
    let questions: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();
    let rounds = 20;

    let xiaoer = time_each(&questions, rounds, |q| {
        std::hint::black_box(engine.ask(q));
    });
    let normalize_only = time_each(&questions, rounds, |q| {
        std::hint::black_box(engine.normalizer().normalize(q));
    });
    let rank_only = time_each(&questions, rounds, |q| {
        std::hint::black_box(engine.rank(q));
    });
    let normalized_examples: Vec<(usize, String)> = knowledge_base
        .entries
        .iter()
        .enumerate()
        .flat_map(|(i, e)| e.examples.iter().map(move |x| (i, x.to_lowercase())))
        .collect();
    let naive = time_each(&questions, rounds, |q| {
        let q = q.to_lowercase();
        let best = normalized_examples
            .iter()
            .map(|(i, x)| (i, strsim::normalized_levenshtein(&q, x)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        std::hint::black_box(best);
    });
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>12}",
        "per question", "p50 µs", "p99 µs", "max µs", "questions/s"
    );
    let rows = [
        ("xiaoer ask (full reply)", &xiaoer),
        ("  of which normalise", &normalize_only),
        ("  of which normalise + rank", &rank_only),
        ("naive strsim over examples", &naive),
    ];
    for (name, times) in rows {
        let total: Duration = times.iter().sum();
        println!(
            "{name:<30} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
            us(percentile(times, 0.50)),
            us(percentile(times, 0.99)),
            us(*times.iter().max().unwrap()),
            times.len() as f64 / total.as_secs_f64()
        );
    }
    let ratio = percentile(&naive, 0.5).as_secs_f64() / percentile(&xiaoer, 0.5).as_secs_f64();
    println!("naive / xiaoer at p50: {ratio:.2}×");
    Ok(())
}

fn time_each(questions: &[&str], rounds: usize, mut run: impl FnMut(&str)) -> Vec<Duration> {
    let mut times = Vec::with_capacity(questions.len() * rounds);
    for _ in 0..rounds {
        for q in questions {
            let started = Instant::now();
            run(q);
            times.push(started.elapsed());
        }
    }
    times.sort();
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
