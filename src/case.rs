//! After-sales cases, recorded at the end of a flow for the weekly review (POLICIES.md §3,
//! §5): who, when, what, order, evidence, the remedy chosen and the responsible party. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dialog::{Attachment, Collect, Flow, Party, Progress};

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// Recorded; nothing left for a person to decide.
    Recorded,
    /// Waiting for a person's decision (compensation, reship, refund).
    Pending,
    /// The buyer left the flow before it ended; kept for the review.
    Abandoned,
    /// Closed by an agent with its outcome.
    Closed,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Recorded => "recorded",
            CaseStatus::Pending => "pending",
            CaseStatus::Abandoned => "abandoned",
            CaseStatus::Closed => "closed",
        }
    }
}

/// A case as a flow produces it (the store adds chat, id and time).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewCase {
    /// The flow that recorded it (`damaged_item` …).
    pub kind: String,
    pub order: Option<String>,
    pub description: Option<String>,
    /// compensation / exchange / return / reship, when the buyer chose one.
    pub remedy: Option<String>,
    pub responsible: Party,
    pub evidence: Vec<Attachment>,
    /// Everything the flow collected, by step.
    pub collected: BTreeMap<String, String>,
    pub status: CaseStatus,
}

impl NewCase {
    /// The case of a flow's progress, charged to `responsible`.
    pub fn from_progress(
        flow: &Flow,
        progress: &Progress,
        responsible: Party,
        status: CaseStatus,
    ) -> NewCase {
        let field = |name: &str| {
            progress
                .collected
                .get(name)
                .filter(|v| v.as_str() != "-")
                .cloned()
        };
        NewCase {
            kind: flow.id.to_string(),
            order: field("order"),
            // The buyer's own words: the first free-text step of the flow.
            description: flow
                .steps
                .iter()
                .find(|s| matches!(s.collect, Collect::Text { .. }))
                .and_then(|s| field(&s.id)),
            remedy: field("remedy"),
            responsible,
            evidence: progress.evidence.clone(),
            collected: progress.collected.clone(),
            status,
        }
    }
}
