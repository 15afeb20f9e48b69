//! Inbound score resolution (SPEC 4.3): whether a value offered by an account replaces,
//! fills or blanks an identity attribute, and the explanation of every decision.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Identity, IdentityId, Phase, Provenance};
use crate::value::Value;

/// A value offered for an identity attribute by one account through one rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) system: String,
    pub(crate) rule: usize,
    pub(crate) account: String,
    pub(crate) identity: IdentityId,
    pub(crate) attribute: String,
    /// The value after conversion to the identity attribute's type; `None` if it does
    /// not convert.
    pub(crate) value: Option<Value>,
    pub(crate) raw: Value,
    /// Why the `in` transform could not be evaluated, if it could not.
    pub(crate) error: Option<String>,
    pub(crate) at: DateTime<Utc>,
    pub(crate) scores: Scores,
}

/// The three scores of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Scores {
    /// Strength when the identity attribute is empty.
    pub create: u8,
    /// Strength when replacing a value.
    pub update: u8,
    /// Strength when blanking a value.
    pub delete: u8,
}

impl Scores {
    pub(crate) fn new(create: i64, update: i64, delete: i64) -> Scores {
        let clamp = |s: i64| s.clamp(0, 100) as u8;
        Scores {
            create: clamp(create),
            update: clamp(update),
            delete: clamp(delete),
        }
    }
}

/// What a candidate would do to the attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteKind {
    /// Fill an empty attribute.
    Create,
    /// Replace a value.
    Update,
    /// Blank a value.
    Delete,
}

/// Why a candidate was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The incoming score is below the strength of the current value's other source.
    LowerScore,
    /// The score that would apply is 0.
    ZeroScore,
    /// The candidate is older than the current value.
    Stale,
    /// The value does not convert to the identity attribute's type.
    InvalidValue,
    /// The rule's `in` transform could not be evaluated; the previous value stays.
    TransformError,
}

impl RejectReason {
    /// The stable `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::LowerScore => "lower_score",
            RejectReason::ZeroScore => "zero_score",
            RejectReason::Stale => "stale",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::TransformError => "transform_error",
        }
    }
}

/// Whether a decision was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum Outcome {
    /// The value was written.
    Applied,
    /// The value was not written, for this reason.
    Rejected(RejectReason),
}

/// One resolution decision, applied or rejected, with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// The identity.
    pub identity: IdentityId,
    /// The identity attribute.
    pub attribute: String,
    /// The offering system.
    pub system: String,
    /// The offering account.
    pub account: String,
    /// The flow rule's position in the system's `flows`.
    pub rule: usize,
    /// Fill, replace or blank.
    pub kind: WriteKind,
    /// The value offered (empty for a blank).
    pub offered: Value,
    /// The value before the decision.
    pub previous: Value,
    /// The score the candidate brought (the one compared).
    pub score: u8,
    /// Who wrote the previous value, if anyone.
    pub incumbent: Option<Provenance>,
    /// Applied, or rejected with a reason.
    pub outcome: Outcome,
    /// When the candidate was produced.
    pub at: DateTime<Utc>,
    /// Set when another candidate of the same import won this attribute first.
    pub outranked_by: Option<String>,
    /// For `transform_error`: the evaluation error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Decision {
    /// The reason, if rejected.
    pub fn reason(&self) -> Option<RejectReason> {
        match self.outcome {
            Outcome::Applied => None,
            Outcome::Rejected(r) => Some(r),
        }
    }

    /// A one-line explanation for an administrator.
    pub fn explain(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WriteKind::Create => "create",
            WriteKind::Update => "update",
            WriteKind::Delete => "delete",
        };
        let offer = if self.offered.is_empty() {
            "a blank".to_owned()
        } else {
            self.offered.to_string()
        };
        write!(
            f,
            "`{}` of {}: {offer} from {} account `{}` (flows[{}], {kind} score {})",
            self.attribute, self.identity, self.system, self.account, self.rule, self.score
        )?;
        match (self.outcome, &self.incumbent) {
            (Outcome::Applied, None) => write!(f, " applied; the attribute was empty"),
            (Outcome::Applied, Some(p)) if p.system == self.system => {
                write!(f, " applied over {}: same source {}", self.previous, p.system)
            }
            (Outcome::Applied, Some(p)) => write!(
                f,
                " applied over {} written by {}: {} >= {}",
                self.previous, p, self.score, p.strength
            ),
            (Outcome::Rejected(reason), incumbent) => {
                write!(f, " rejected ({}): ", reason.as_str())?;
                match (reason, incumbent) {
                    (_, _) if self.outranked_by.is_some() => write!(
                        f,
                        "{} won this attribute first in the same import",
                        self.outranked_by.as_deref().unwrap_or("another candidate")
                    ),
                    (RejectReason::ZeroScore, _) => write!(f, "the {kind} score of the rule is 0"),
                    (RejectReason::InvalidValue, _) => {
                        write!(f, "the value does not fit the identity attribute's type")
                    }
                    (RejectReason::TransformError, _) => {
                        write!(
                            f,
                            "the `in` transform failed: {}",
                            self.error.as_deref().unwrap_or("unknown error")
                        )
                    }
                    (RejectReason::Stale, Some(p)) => {
                        write!(
                            f,
                            "it is older than the current value {} written by {}",
                            self.previous, p
                        )
                    }
                    (RejectReason::LowerScore, Some(p)) => write!(
                        f,
                        "{} < {}, the strength of the current value {} written by {}",
                        self.score, p.strength, self.previous, p
                    ),
                    (_, None) => write!(f, "the attribute has no incumbent"),
                }
            }
        }
    }
}

/// The score a candidate brings against the identity's current state, and what it
/// would do; `None` when it offers the current value (nothing happens).
pub(crate) fn applicable(identity: &Identity, c: &Candidate, case_exact: bool) -> Option<(WriteKind, u8)> {
    let Some(value) = &c.value else {
        return Some((WriteKind::Update, 0));
    };
    let current = identity.value(&c.attribute);
    if value.same_as(current, case_exact) {
        return None;
    }
    let incumbent = identity.provenance.get(&c.attribute);
    Some(match (current.is_empty(), value.is_empty()) {
        (true, _) => (WriteKind::Create, c.scores.create),
        (false, true) => (WriteKind::Delete, c.scores.delete),
        (false, false) => {
            let displacing_create = incumbent.is_some_and(|p| p.system != c.system && p.phase == Phase::Create);
            let score = if displacing_create {
                c.scores.update.max(c.scores.create)
            } else {
                c.scores.update
            };
            (WriteKind::Update, score)
        }
    })
}

/// Resolves one candidate against an identity, writing the value if it wins. `None`
/// when the candidate offers the current value.
pub(crate) fn resolve(identity: &mut Identity, c: &Candidate, case_exact: bool) -> Option<Decision> {
    let (kind, score) = applicable(identity, c, case_exact)?;
    let previous = identity.value(&c.attribute).clone();
    let incumbent = identity.provenance.get(&c.attribute).cloned();
    let same_source = incumbent.as_ref().is_none_or(|p| p.system == c.system);
    let outcome = match &c.value {
        None if c.error.is_some() => Outcome::Rejected(RejectReason::TransformError),
        None => Outcome::Rejected(RejectReason::InvalidValue),
        Some(_) if incumbent.as_ref().is_some_and(|p| c.at < p.at) => Outcome::Rejected(RejectReason::Stale),
        Some(_) if score == 0 => Outcome::Rejected(RejectReason::ZeroScore),
        // Creates fill an empty attribute; updates and deletes must match the incumbent's
        // strength unless they come from the same source. Ties go to the later change,
        // which the incoming candidate is (stale ones were refused above).
        Some(_) if kind == WriteKind::Create || same_source => Outcome::Applied,
        Some(_) if incumbent.as_ref().is_some_and(|p| score >= p.strength) => Outcome::Applied,
        Some(_) => Outcome::Rejected(RejectReason::LowerScore),
    };
    let offered = c.value.clone().unwrap_or_else(|| c.raw.clone());
    if outcome == Outcome::Applied {
        let phase = if kind == WriteKind::Create {
            Phase::Create
        } else {
            Phase::Update
        };
        identity.write(
            &c.attribute,
            offered.clone(),
            Provenance::new(&c.system, score, phase, c.at),
        );
        identity.modified = identity.modified.max(c.at);
    }
    Some(Decision {
        identity: identity.id,
        attribute: c.attribute.clone(),
        system: c.system.clone(),
        account: c.account.clone(),
        rule: c.rule,
        kind,
        offered,
        previous,
        score,
        incumbent,
        outcome,
        at: c.at,
        outranked_by: None,
        error: c.error.clone(),
    })
}

/// Resolves the candidates of one import for one identity attribute: the highest
/// applicable score first (then account key, then rule order); once one of them wins
/// (or confirms the current value), the others lose to it.
pub(crate) fn resolve_group(identity: &mut Identity, mut group: Vec<Candidate>, case_exact: bool) -> Vec<Decision> {
    // The common case, one candidate, needs no ranking.
    if group.len() == 1 {
        return group
            .pop()
            .and_then(|c| resolve(identity, &c, case_exact))
            .into_iter()
            .collect();
    }
    let rank = |c: &Candidate| applicable(identity, c, case_exact).map_or(u8::MAX, |(_, s)| s);
    let mut ranked: Vec<(u8, Candidate)> = group.drain(..).map(|c| (rank(&c), c)).collect();
    ranked.sort_by(|(sa, a), (sb, b)| {
        sb.cmp(sa)
            .then_with(|| a.account.cmp(&b.account))
            .then(a.rule.cmp(&b.rule))
    });
    let mut decisions = Vec::new();
    // The label of the candidate that won (or confirmed the value), once one has.
    let mut winner: Option<String> = None;
    for (_, c) in ranked {
        if let Some(winner) = &winner {
            let current = identity.value(&c.attribute);
            if c.value.as_ref().is_some_and(|v| v.same_as(current, case_exact)) {
                continue;
            }
            let (kind, score) = applicable(identity, &c, case_exact).unwrap_or((WriteKind::Update, 0));
            decisions.push(Decision {
                identity: identity.id,
                attribute: c.attribute.clone(),
                system: c.system.clone(),
                account: c.account.clone(),
                rule: c.rule,
                kind,
                offered: c.value.clone().unwrap_or(c.raw.clone()),
                previous: current.clone(),
                score,
                incumbent: identity.provenance.get(&c.attribute).cloned(),
                outcome: Outcome::Rejected(RejectReason::LowerScore),
                at: c.at,
                outranked_by: Some(winner.clone()),
                error: None,
            });
            continue;
        }
        let decision = resolve(identity, &c, case_exact);
        if decision.as_ref().is_none_or(|d| d.outcome == Outcome::Applied) {
            winner = Some(format!("{} account `{}`", c.system, c.account));
        }
        decisions.extend(decision);
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Scalar;
    use chrono::TimeZone;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, day, 8, 0, 0).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::single(Scalar::Text(s.into()))
    }

    fn cand(system: &str, value: Value, scores: (i64, i64, i64), day: u32) -> Candidate {
        Candidate {
            system: system.into(),
            rule: 0,
            account: format!("{system}-acct"),
            identity: IdentityId(1),
            attribute: "phone".into(),
            raw: value.clone(),
            value: Some(value),
            error: None,
            at: t(day),
            scores: Scores::new(scores.0, scores.1, scores.2),
        }
    }

    fn identity_with(system: &str, value: &str, strength: u8, phase: Phase, day: u32) -> Identity {
        let mut i = Identity::new(IdentityId(1), t(1));
        i.write("phone", text(value), Provenance::new(system, strength, phase, t(day)));
        i
    }

    fn outcome(identity: &mut Identity, c: &Candidate) -> Option<Outcome> {
        resolve(identity, c, true).map(|d| d.outcome)
    }

    #[test]
    fn equal_value_does_nothing() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        assert_eq!(outcome(&mut i, &cand("tel", text("1"), (0, 0, 0), 2)), None);
    }

    #[test]
    fn create_needs_a_positive_create_score() {
        let mut i = Identity::new(IdentityId(1), t(1));
        assert_eq!(
            outcome(&mut i, &cand("hr", text("1"), (0, 90, 90), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
        assert!(i.value("phone").is_empty());
        assert_eq!(
            outcome(&mut i, &cand("hr", text("1"), (10, 0, 0), 2)),
            Some(Outcome::Applied)
        );
        let p = &i.provenance["phone"];
        assert_eq!(
            (p.system.as_str(), p.strength, p.phase, p.at),
            ("hr", 10, Phase::Create, t(2))
        );
    }

    #[test]
    fn update_from_another_source_needs_at_least_the_incumbent_strength() {
        let mut i = identity_with("hr", "1", 60, Phase::Update, 1);
        assert_eq!(
            outcome(&mut i, &cand("ad", text("2"), (99, 59, 0), 2)),
            Some(Outcome::Rejected(RejectReason::LowerScore))
        );
        assert_eq!(i.value("phone"), &text("1"));
        // a tie goes to the later change
        assert_eq!(
            outcome(&mut i, &cand("ad", text("2"), (0, 60, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance["phone"].phase, Phase::Update);
    }

    #[test]
    fn a_stronger_initial_source_displaces_a_create() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        // update 40 alone would lose; max(update, create) = 55 wins
        assert_eq!(
            outcome(&mut i, &cand("tel", text("2"), (55, 40, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance["phone"].strength, 55);
    }

    #[test]
    fn create_only_source_never_changes_its_own_value() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        assert_eq!(
            outcome(&mut i, &cand("hr", text("2"), (50, 0, 0), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
    }

    #[test]
    fn same_source_updates_regardless_of_strength() {
        let mut i = identity_with("hr", "1", 90, Phase::Update, 1);
        assert_eq!(
            outcome(&mut i, &cand("hr", text("2"), (0, 5, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance["phone"].strength, 5);
    }

    #[test]
    fn delete_rules() {
        let mut i = identity_with("hr", "1", 70, Phase::Create, 1);
        assert_eq!(
            outcome(&mut i, &cand("ad", Value::Empty, (60, 60, 0), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
        assert_eq!(
            outcome(&mut i, &cand("ad", Value::Empty, (60, 60, 40), 2)),
            Some(Outcome::Rejected(RejectReason::LowerScore))
        );
        assert_eq!(
            outcome(&mut i, &cand("ad", Value::Empty, (0, 0, 70), 2)),
            Some(Outcome::Applied)
        );
        assert!(i.value("phone").is_empty());
        assert!(
            !i.provenance.contains_key("phone"),
            "provenance is cleared with the value"
        );
        let mut j = identity_with("hr", "1", 90, Phase::Create, 1);
        assert_eq!(
            outcome(&mut j, &cand("hr", Value::Empty, (0, 0, 1), 2)),
            Some(Outcome::Applied)
        );
    }

    #[test]
    fn an_older_candidate_is_stale() {
        let mut i = identity_with("hr", "1", 10, Phase::Create, 5);
        assert_eq!(
            outcome(&mut i, &cand("hr", text("2"), (100, 100, 100), 4)),
            Some(Outcome::Rejected(RejectReason::Stale))
        );
    }

    #[test]
    fn unconvertible_values_are_rejected_as_invalid() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut c = cand("hr", text("x"), (100, 100, 100), 2);
        c.value = None;
        assert_eq!(outcome(&mut i, &c), Some(Outcome::Rejected(RejectReason::InvalidValue)));
    }

    #[test]
    fn group_resolves_highest_score_first_and_others_lose() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut low = cand("hr", text("low"), (10, 10, 10), 2);
        low.account = "A".into();
        let mut high = cand("hr", text("high"), (80, 80, 80), 2);
        high.account = "B".into();
        let decisions = resolve_group(&mut i, vec![low, high], true);
        assert_eq!(i.value("phone"), &text("high"));
        assert_eq!(decisions.len(), 2);
        assert_eq!(decisions[1].outcome, Outcome::Rejected(RejectReason::LowerScore));
        assert!(decisions[1].explain().contains("same import"));
    }

    #[test]
    fn group_ties_go_by_account_key() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut b = cand("hr", text("from-b"), (50, 50, 50), 2);
        b.account = "B".into();
        let mut a = cand("hr", text("from-a"), (50, 50, 50), 2);
        a.account = "A".into();
        resolve_group(&mut i, vec![b, a], true);
        assert_eq!(i.value("phone"), &text("from-a"));
    }

    #[test]
    fn explanations_name_rule_scores_and_incumbent() {
        let mut i = identity_with("hr", "555", 60, Phase::Create, 1);
        let d = resolve(&mut i, &cand("ad", text("777"), (30, 45, 0), 2), true).unwrap();
        let text = d.explain();
        assert!(
            text.contains("lower_score") && text.contains("45 < 60") && text.contains("hr"),
            "{text}"
        );
    }
}
