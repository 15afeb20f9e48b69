//! Inbound score resolution (SPEC 4.3): whether a value offered by an account replaces,
//! fills or blanks an identity attribute, and the explanation of every decision.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Identity, IdentityId, Phase, Provenance};
use crate::observe::DecisionLog;
use crate::text::Text;
use crate::value::Value;

/// A value offered for an identity attribute by one account through one rule. It
/// borrows the account key and the attribute name: candidates live only while one
/// identity is resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate<'a> {
    pub(crate) account: &'a str,
    pub(crate) attribute: &'a Text,
    /// The attribute's position among the identity attributes in name order: groups
    /// and orders candidates without comparing names.
    pub(crate) rank: u32,
    /// The flow rule's position in the system's `flows`.
    pub(crate) rule: usize,
    pub(crate) scores: Scores,
    pub(crate) offer: Offer,
}

/// What a candidate brings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Offer {
    /// The value, converted to the identity attribute's type (empty for a blank).
    Value(Value),
    /// The raw value, which does not convert to the identity attribute's type.
    Invalid(Value),
    /// The rule's `in` transform failed with this error.
    Failed(String),
}

impl Offer {
    fn value(&self) -> Option<&Value> {
        match self {
            Offer::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value a decision shows as offered.
    fn shown(&self) -> Value {
        match self {
            Offer::Value(v) | Offer::Invalid(v) => v.clone(),
            Offer::Failed(_) => Value::Empty,
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Offer::Failed(e) => Some(e.clone()),
            _ => None,
        }
    }
}

/// What every candidate of one round of resolution shares: the offering system and
/// the time of the change.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round<'a> {
    pub(crate) system: &'a Text,
    pub(crate) at: DateTime<Utc>,
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
        if self.system == crate::model::HOST_SYSTEM {
            // A direct edit (`Engine::set_attributes`): no account, no rule.
            write!(
                f,
                "`{}` of {}: {offer} set by the host's direct edit ({}, {kind}, score {})",
                self.attribute, self.identity, self.system, self.score
            )?;
        } else {
            write!(
                f,
                "`{}` of {}: {offer} from {} account `{}` (flows[{}], {kind} score {})",
                self.attribute, self.identity, self.system, self.account, self.rule, self.score
            )?;
        }
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
pub(crate) fn applicable(
    identity: &Identity,
    round: Round<'_>,
    c: &Candidate<'_>,
    case_exact: bool,
) -> Option<(WriteKind, u8)> {
    let Some(value) = c.offer.value() else {
        return Some((WriteKind::Update, 0));
    };
    let current = identity.value(c.attribute.as_str());
    if value.same_as(current, case_exact) {
        return None;
    }
    let incumbent = identity.provenance(c.attribute.as_str());
    Some(match (current.is_empty(), value.is_empty()) {
        (true, _) => (WriteKind::Create, c.scores.create),
        (false, true) => (WriteKind::Delete, c.scores.delete),
        (false, false) => {
            let displacing_create = incumbent.is_some_and(|p| p.system != *round.system && p.phase == Phase::Create);
            let score = if displacing_create {
                c.scores.update.max(c.scores.create)
            } else {
                c.scores.update
            };
            (WriteKind::Update, score)
        }
    })
}

/// Resolves one candidate against an identity, writing the value if it wins, and
/// records the decision (an applied one is built only when someone watches). `None`
/// when the candidate offers the current value; otherwise whether it was applied.
pub(crate) fn resolve(
    identity: &mut Identity,
    round: Round<'_>,
    c: Candidate<'_>,
    case_exact: bool,
    log: &mut DecisionLog<'_, '_>,
) -> Option<bool> {
    let (kind, score) = applicable(identity, round, &c, case_exact)?;
    let incumbent = identity.provenance(c.attribute.as_str());
    let same_source = incumbent.is_none_or(|p| p.system == *round.system);
    let outcome = match &c.offer {
        Offer::Failed(_) => Outcome::Rejected(RejectReason::TransformError),
        Offer::Invalid(_) => Outcome::Rejected(RejectReason::InvalidValue),
        Offer::Value(_) if incumbent.is_some_and(|p| round.at < p.at) => Outcome::Rejected(RejectReason::Stale),
        Offer::Value(_) if score == 0 => Outcome::Rejected(RejectReason::ZeroScore),
        // Creates fill an empty attribute; updates and deletes must match the incumbent's
        // strength unless they come from the same source. Ties go to the later change,
        // which the incoming candidate is (stale ones were refused above).
        Offer::Value(_) if kind == WriteKind::Create || same_source => Outcome::Applied,
        Offer::Value(_) if incumbent.is_some_and(|p| score >= p.strength) => Outcome::Applied,
        Offer::Value(_) => Outcome::Rejected(RejectReason::LowerScore),
    };
    let applied = outcome == Outcome::Applied;
    let decision = (!applied || log.wants_applied()).then(|| Decision {
        identity: identity.id,
        attribute: c.attribute.to_string(),
        system: round.system.to_string(),
        account: c.account.to_owned(),
        rule: c.rule,
        kind,
        offered: c.offer.shown(),
        previous: identity.value(c.attribute.as_str()).clone(),
        score,
        incumbent: incumbent.cloned(),
        outcome,
        at: round.at,
        outranked_by: None,
        error: c.offer.error(),
    });
    if applied {
        let phase = if kind == WriteKind::Create {
            Phase::Create
        } else {
            Phase::Update
        };
        if let Offer::Value(value) = c.offer {
            identity.write(
                c.attribute,
                value,
                Provenance::new(round.system, score, phase, round.at),
            );
            identity.modified = identity.modified.max(round.at);
        }
    }
    match decision {
        Some(decision) => log.record(decision),
        None => log.applied_unbuilt(),
    }
    Some(applied)
}

/// Resolves the candidates of one import for one identity attribute: the highest
/// applicable score first (then account key, then rule order); once one of them wins
/// (or confirms the current value), the others lose to it. Returns whether a value
/// was written.
pub(crate) fn resolve_group(
    identity: &mut Identity,
    round: Round<'_>,
    mut group: Vec<Candidate<'_>>,
    case_exact: bool,
    log: &mut DecisionLog<'_, '_>,
) -> bool {
    // The common case, one candidate, needs no ranking.
    if group.len() == 1 {
        return group
            .pop()
            .and_then(|c| resolve(identity, round, c, case_exact, log))
            .unwrap_or(false);
    }
    let rank = |c: &Candidate<'_>| applicable(identity, round, c, case_exact).map_or(u8::MAX, |(_, s)| s);
    let mut ranked: Vec<(u8, Candidate<'_>)> = group.drain(..).map(|c| (rank(&c), c)).collect();
    ranked.sort_by(|(sa, a), (sb, b)| {
        sb.cmp(sa)
            .then_with(|| a.account.cmp(b.account))
            .then(a.rule.cmp(&b.rule))
    });
    let mut written = false;
    // The account of the candidate that won (or confirmed the value), once one has.
    let mut winner: Option<&str> = None;
    for (_, c) in ranked {
        if let Some(winner) = winner {
            let current = identity.value(c.attribute.as_str());
            if c.offer.value().is_some_and(|v| v.same_as(current, case_exact)) {
                continue;
            }
            let (kind, score) = applicable(identity, round, &c, case_exact).unwrap_or((WriteKind::Update, 0));
            log.record(Decision {
                identity: identity.id,
                attribute: c.attribute.to_string(),
                system: round.system.to_string(),
                account: c.account.to_owned(),
                rule: c.rule,
                kind,
                offered: c.offer.shown(),
                previous: current.clone(),
                score,
                incumbent: identity.provenance(c.attribute.as_str()).cloned(),
                outcome: Outcome::Rejected(RejectReason::LowerScore),
                at: round.at,
                outranked_by: Some(format!("{} account `{winner}`", round.system)),
                error: None,
            });
            continue;
        }
        let account = c.account;
        match resolve(identity, round, c, case_exact, log) {
            None => winner = Some(account),
            Some(true) => {
                written = true;
                winner = Some(account);
            }
            Some(false) => {}
        }
    }
    written
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

    /// A candidate with the round it belongs to.
    struct Cand {
        round: Round<'static>,
        c: Candidate<'static>,
    }

    /// A name that lives as long as the test (candidates borrow their names).
    fn name(s: &str) -> &'static Text {
        Box::leak(Box::new(Text::from(s)))
    }

    fn cand(system: &'static str, value: Value, scores: (i64, i64, i64), day: u32) -> Cand {
        Cand {
            round: Round {
                system: name(system),
                at: t(day),
            },
            c: Candidate {
                rule: 0,
                rank: 0,
                account: "acct",
                attribute: name("phone"),
                offer: Offer::Value(value),
                scores: Scores::new(scores.0, scores.1, scores.2),
            },
        }
    }

    /// Every decision `run` records, applied ones included.
    fn watched(run: impl FnOnce(&mut DecisionLog<'_, '_>)) -> Vec<Decision> {
        let mut all = Vec::new();
        let mut on_decision = |d: &Decision| all.push(d.clone());
        let mut observer = crate::observe::Observer::new().on_decision(&mut on_decision);
        run(&mut DecisionLog::new(&mut observer));
        all
    }

    fn decide(identity: &mut Identity, c: Cand) -> Option<Decision> {
        watched(|log| {
            resolve(identity, c.round, c.c, true, log);
        })
        .pop()
    }

    fn identity_with(system: &str, value: &str, strength: u8, phase: Phase, day: u32) -> Identity {
        let mut i = Identity::new(IdentityId(1), t(1));
        i.write(
            name("phone"),
            text(value),
            Provenance::new(system, strength, phase, t(day)),
        );
        i
    }

    fn outcome(identity: &mut Identity, c: Cand) -> Option<Outcome> {
        decide(identity, c).map(|d| d.outcome)
    }

    #[test]
    fn equal_value_does_nothing() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        assert_eq!(outcome(&mut i, cand("tel", text("1"), (0, 0, 0), 2)), None);
    }

    #[test]
    fn create_needs_a_positive_create_score() {
        let mut i = Identity::new(IdentityId(1), t(1));
        assert_eq!(
            outcome(&mut i, cand("hr", text("1"), (0, 90, 90), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
        assert!(i.value("phone").is_empty());
        assert_eq!(
            outcome(&mut i, cand("hr", text("1"), (10, 0, 0), 2)),
            Some(Outcome::Applied)
        );
        let p = i.provenance("phone").unwrap();
        assert_eq!(
            (p.system.as_str(), p.strength, p.phase, p.at),
            ("hr", 10, Phase::Create, t(2))
        );
    }

    #[test]
    fn update_from_another_source_needs_at_least_the_incumbent_strength() {
        let mut i = identity_with("hr", "1", 60, Phase::Update, 1);
        assert_eq!(
            outcome(&mut i, cand("ad", text("2"), (99, 59, 0), 2)),
            Some(Outcome::Rejected(RejectReason::LowerScore))
        );
        assert_eq!(i.value("phone"), &text("1"));
        // a tie goes to the later change
        assert_eq!(
            outcome(&mut i, cand("ad", text("2"), (0, 60, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance("phone").unwrap().phase, Phase::Update);
    }

    #[test]
    fn a_stronger_initial_source_displaces_a_create() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        // update 40 alone would lose; max(update, create) = 55 wins
        assert_eq!(
            outcome(&mut i, cand("tel", text("2"), (55, 40, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance("phone").unwrap().strength, 55);
    }

    #[test]
    fn create_only_source_never_changes_its_own_value() {
        let mut i = identity_with("hr", "1", 50, Phase::Create, 1);
        assert_eq!(
            outcome(&mut i, cand("hr", text("2"), (50, 0, 0), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
    }

    #[test]
    fn same_source_updates_regardless_of_strength() {
        let mut i = identity_with("hr", "1", 90, Phase::Update, 1);
        assert_eq!(
            outcome(&mut i, cand("hr", text("2"), (0, 5, 0), 2)),
            Some(Outcome::Applied)
        );
        assert_eq!(i.provenance("phone").unwrap().strength, 5);
    }

    #[test]
    fn delete_rules() {
        let mut i = identity_with("hr", "1", 70, Phase::Create, 1);
        assert_eq!(
            outcome(&mut i, cand("ad", Value::Empty, (60, 60, 0), 2)),
            Some(Outcome::Rejected(RejectReason::ZeroScore))
        );
        assert_eq!(
            outcome(&mut i, cand("ad", Value::Empty, (60, 60, 40), 2)),
            Some(Outcome::Rejected(RejectReason::LowerScore))
        );
        assert_eq!(
            outcome(&mut i, cand("ad", Value::Empty, (0, 0, 70), 2)),
            Some(Outcome::Applied)
        );
        assert!(i.value("phone").is_empty());
        assert!(i.provenance("phone").is_none(), "provenance is cleared with the value");
        let mut j = identity_with("hr", "1", 90, Phase::Create, 1);
        assert_eq!(
            outcome(&mut j, cand("hr", Value::Empty, (0, 0, 1), 2)),
            Some(Outcome::Applied)
        );
    }

    #[test]
    fn an_older_candidate_is_stale() {
        let mut i = identity_with("hr", "1", 10, Phase::Create, 5);
        assert_eq!(
            outcome(&mut i, cand("hr", text("2"), (100, 100, 100), 4)),
            Some(Outcome::Rejected(RejectReason::Stale))
        );
    }

    #[test]
    fn unconvertible_values_are_rejected_as_invalid() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut c = cand("hr", text("x"), (100, 100, 100), 2);
        c.c.offer = Offer::Invalid(text("x"));
        assert_eq!(outcome(&mut i, c), Some(Outcome::Rejected(RejectReason::InvalidValue)));
    }

    #[test]
    fn group_resolves_highest_score_first_and_others_lose() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut low = cand("hr", text("low"), (10, 10, 10), 2);
        low.c.account = "A";
        let mut high = cand("hr", text("high"), (80, 80, 80), 2);
        high.c.account = "B";
        let round = low.round;
        let decisions = watched(|log| {
            resolve_group(&mut i, round, vec![low.c, high.c], true, log);
        });
        assert_eq!(i.value("phone"), &text("high"));
        assert_eq!(decisions.len(), 2);
        assert_eq!(decisions[1].outcome, Outcome::Rejected(RejectReason::LowerScore));
        assert!(decisions[1].explain().contains("same import"));
    }

    #[test]
    fn group_ties_go_by_account_key() {
        let mut i = Identity::new(IdentityId(1), t(1));
        let mut b = cand("hr", text("from-b"), (50, 50, 50), 2);
        b.c.account = "B";
        let mut a = cand("hr", text("from-a"), (50, 50, 50), 2);
        a.c.account = "A";
        let round = a.round;
        watched(|log| {
            resolve_group(&mut i, round, vec![b.c, a.c], true, log);
        });
        assert_eq!(i.value("phone"), &text("from-a"));
    }

    #[test]
    fn explanations_name_rule_scores_and_incumbent() {
        let mut i = identity_with("hr", "555", 60, Phase::Create, 1);
        let d = decide(&mut i, cand("ad", text("777"), (30, 45, 0), 2)).unwrap();
        let text = d.explain();
        assert!(
            text.contains("lower_score") && text.contains("45 < 60") && text.contains("hr"),
            "{text}"
        );
    }
}
