//! Evaluation sets (`{"text", "expect", "accept"?, "split"?}` per line) and the figures the
//! issue asks for: precision of answered, coverage, handoff recall. Pure: the caller runs the
//! engine and passes each case's reply.

use serde::{Deserialize, Serialize};

use crate::engine::{Decision, Reply};

/// The `expect` value of a question the bot must hand to a person.
pub const HANDOFF: &str = "handoff";

/// One evaluation question.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub text: String,
    /// The topic id that answers it, or "handoff".
    pub expect: String,
    /// Other topic ids that are equally right (two questions in one message).
    #[serde(default)]
    pub accept: Vec<String>,
    /// "tune" or "heldout".
    #[serde(default)]
    pub split: Option<String>,
}

impl Case {
    pub fn expects_handoff(&self) -> bool {
        self.expect == HANDOFF
    }

    /// True when `topic` is an acceptable answer to this case.
    pub fn accepts(&self, topic: &str) -> bool {
        self.expect == topic || self.accept.iter().any(|a| a == topic)
    }
}

/// Parses JSON Lines; reports every bad line as `line N: problem`.
pub fn parse_cases(text: &str) -> (Vec<Case>, Vec<String>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Case>(line) {
            Ok(case) => cases.push(case),
            Err(error) => problems.push(format!("line {}: {error}", number + 1)),
        }
    }
    (cases, problems)
}

/// What went wrong with one case.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub text: String,
    pub expect: String,
    pub action: Decision,
    pub topic: Option<String>,
    pub confidence: f32,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub cases: usize,
    pub in_scope: usize,
    pub handoff_expected: usize,
    pub answered: usize,
    pub answered_correctly: usize,
    pub in_scope_answered: usize,
    pub clarified: usize,
    pub handed_off_when_expected: usize,
    /// Answered questions per confidence fifth ([0, 0.2), … [0.8, 1]): (answered, correct).
    pub by_confidence: [(usize, usize); 5],
    pub misses: Vec<Miss>,
}

impl Report {
    /// Of the questions the bot answered, the share answered with an acceptable topic.
    pub fn precision(&self) -> f64 {
        ratio(self.answered_correctly, self.answered)
    }

    /// Of the questions the knowledge base covers, the share the bot answered.
    pub fn coverage(&self) -> f64 {
        ratio(self.in_scope_answered, self.in_scope)
    }

    /// Of the questions that need a person, the share handed off.
    pub fn handoff_recall(&self) -> f64 {
        ratio(self.handed_off_when_expected, self.handoff_expected)
    }

    /// Of the questions the knowledge base covers, the share answered correctly.
    pub fn accuracy(&self) -> f64 {
        ratio(self.answered_correctly, self.in_scope)
    }

    /// Adds one case and the bot's reply to it.
    pub fn add(&mut self, case: &Case, reply: &Reply) {
        self.cases += 1;
        let answered = matches!(reply.action, Decision::Answer | Decision::Dialog);
        let correct = answered
            && reply
                .topic
                .as_ref()
                .is_some_and(|t| case.accepts(t.as_str()));
        if case.expects_handoff() {
            self.handoff_expected += 1;
            if reply.action == Decision::Handoff {
                self.handed_off_when_expected += 1;
            }
        } else {
            self.in_scope += 1;
            if answered {
                self.in_scope_answered += 1;
            }
        }
        if answered {
            self.answered += 1;
            let bin = ((reply.confidence * 5.0) as usize).min(4);
            self.by_confidence[bin].0 += 1;
            if correct {
                self.answered_correctly += 1;
                self.by_confidence[bin].1 += 1;
            }
        }
        if reply.action == Decision::Clarify {
            self.clarified += 1;
        }
        let ok = if case.expects_handoff() {
            reply.action == Decision::Handoff
        } else {
            correct
        };
        if !ok {
            self.misses.push(Miss {
                text: case.text.clone(),
                expect: case.expect.clone(),
                action: reply.action,
                topic: reply.topic.as_ref().map(|t| t.to_string()),
                confidence: reply.confidence,
            });
        }
    }
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named_and_good_ones_kept() {
        let (cases, problems) =
            parse_cases("{\"text\":\"a\",\"expect\":\"invoice\"}\nnot json\n\n{\"text\":1}\n");
        assert_eq!(cases.len(), 1);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("line 2:"), "{problems:?}");
    }
}
