//! Prints the matcher's ranking and evidence for each stdin line (a debugging aid).
//!
//!     echo 能开发票吗 | cargo run --release --example explain

use std::io::BufRead;
use std::path::Path;

use xiaoer::config::Settings;
use xiaoer::engine::Engine;

fn main() -> anyhow::Result<()> {
    let settings = Settings::default();
    let engine = Engine::load(Path::new(&settings.kb), settings.thresholds)?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        println!("{line}  ⇒  {}", engine.normalizer().normalize(&line));
        for candidate in engine.rank(&line).candidates {
            let id = &engine.knowledge_base().entries[candidate.entry].id;
            let e = candidate.evidence;
            println!(
                "  {id:<20} p={:.3} sim={:.2} t∈q={:.2} q∈t={:.2} cov={:.2} mass={:.2} bm25={:.2}",
                candidate.score,
                e.similarity,
                e.text_in_question,
                e.question_in_text,
                e.coverage,
                e.mass,
                e.bm25
            );
        }
    }
    Ok(())
}
