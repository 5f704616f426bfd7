//! Evaluation sets (`{"text", "expect", "accept"?, "split"?, "kind"?, "author"?}` per line) and
//! their figures: precision of answered, coverage, handoff recall, the right topic ranked first
//! or among the first three, what clarifying achieved, and a reliability table (confidence band
//! → share right) that says whether confidence means probability. Pure: the caller runs the
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
    /// For handoffs: `human`, `complaint` or `out_of_scope`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Who wrote the question (provenance: an evaluation set is written apart from the
    /// examples it tests).
    #[serde(default)]
    pub author: Option<String>,
    /// The conversation a real message came from (real-buyer sets).
    #[serde(default)]
    pub session: Option<String>,
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
    /// Every question per confidence tenth: (questions, the bot's best topic right). The
    /// reliability table: calibrated confidence puts about 0.75 right in the 0.7–0.8 band.
    pub reliability: [(usize, usize); 10],
    /// In-scope questions whose right topic the matcher ranked first.
    pub top1_right: usize,
    /// In-scope questions whose right topic was among the first three.
    pub top3_right: usize,
    /// In-scope questions clarified with the right topic among the choices.
    pub clarified_right: usize,
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

    /// Of the questions the knowledge base covers, the share whose right topic ranked first.
    pub fn top1(&self) -> f64 {
        ratio(self.top1_right, self.in_scope)
    }

    /// Of the questions the knowledge base covers, the share with the right topic in the
    /// first three.
    pub fn top3(&self) -> f64 {
        ratio(self.top3_right, self.in_scope)
    }

    /// Of all questions, the share the bot clarified.
    pub fn clarify_rate(&self) -> f64 {
        ratio(self.clarified, self.cases)
    }

    /// Of the in-scope questions not answered, the share where a clarify offered the right
    /// topic (the buyer is one tap from the answer).
    pub fn clarify_helped(&self) -> f64 {
        ratio(
            self.clarified_right,
            self.in_scope - self.in_scope_answered.min(self.in_scope),
        )
    }

    /// Of the questions the knowledge base covers, the share answered correctly or clarified
    /// with the right topic among the choices.
    pub fn answered_or_clarified_right(&self) -> f64 {
        // A handoff question is never answered correctly: every correct answer is in scope.
        ratio(
            self.answered_correctly + self.clarified_right,
            self.in_scope,
        )
    }

    /// Adds one case and the bot's reply to it.
    pub fn add(&mut self, case: &Case, reply: &Reply) {
        self.cases += 1;
        let best_right = match reply.candidates.first() {
            _ if case.expects_handoff() => {
                reply.action == Decision::Handoff && reply.topic.is_some()
            }
            Some(best) => case.accepts(best.topic.as_str()),
            None => false,
        };
        let band = ((reply.confidence * 10.0) as usize).min(9);
        self.reliability[band].0 += 1;
        self.reliability[band].1 += usize::from(best_right);
        if !case.expects_handoff() {
            let ranked = |n: usize| {
                reply
                    .candidates
                    .iter()
                    .take(n)
                    .any(|c| case.accepts(c.topic.as_str()))
            };
            self.top1_right += usize::from(ranked(1));
            self.top3_right += usize::from(ranked(3));
            if reply.action == Decision::Clarify
                && reply.choices.iter().any(|c| case.accepts(c.as_str()))
            {
                self.clarified_right += 1;
            }
        }
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

/// A share; NaN for 0 of 0, so a floor over an empty set fails instead of passing.
fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        f64::NAN
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
