//! A static configuration lint: the risks an administrator should see before deploying
//! a configuration, found without running anything.
//!
//! | kind | finding |
//! | --- | --- |
//! | `unstable_round_trip` | a bidirectional rule (or an inbound and an outbound rule joining the same attributes) whose transforms do not give a value back unchanged on sample values: the system would be sent a different value than it gave, and may loop |
//! | `rule_never_writes` | an inbound rule whose scores are all 0: it can never write |
//! | `rule_shadowed` | an inbound rule whose best score is below another system's lowest for the same attribute: it can fill the attribute while that system has no value but never replace its value |
//! | `conflicting_authoritative` | two systems' outbound rules both `authoritative` on one identity attribute |
//! | `unwritten_attribute` | an identity attribute that no inbound rule writes and that is not computed |
//! | `computed_cycle` | computed attributes whose inputs form a cycle |
//! | `unguarded_rejections` | a system with neither `max_rejected` nor `max_pct_rejected`: an export whose rows all fail to parse (a type declared wrong, a changed date format) would be applied as a quiet success that changes nothing (SPEC 12.3) |
//! | `unguarded_deletion` | a system that deletes accounts it did not create (`delete_unowned`) with no `max_deleted` threshold: one bad scope change could delete every account |
//!
//! ```
//! use attrflow::{lint::lint, Config};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config: Config = serde_json::from_str(r#"{
//!       "identity": { "attributes": { "mail": { "type": "string" }, "nickname": { "type": "string" } } },
//!       "systems": { "ad": {
//!         "schema": { "account_id": "mail", "account_name": "mail", "attributes": { "mail": { "type": "string" } } },
//!         "thresholds": { "max_pct_rejected": 10.0 },
//!         "flows": [ { "account": "mail", "identity": "mail", "direction": "bidirectional",
//!                      "create": 50, "update": 50, "out": { "upper": { "attr": "mail" } } } ] } }
//!     }"#)?;
//!     let findings = lint(&config);
//!     let kinds: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
//!     assert_eq!(kinds, ["unstable_round_trip", "unwritten_attribute"]);
//!     Ok(())
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Config, FlowRule, SystemConfig};
use crate::transform::Transform;
use crate::validate::computed_cycle;
use crate::value::{Scalar, Value, ValueType};

/// What a lint finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LintKind {
    /// Transforms that do not give a value back unchanged.
    UnstableRoundTrip,
    /// An inbound rule whose scores are all 0.
    RuleNeverWrites,
    /// An inbound rule that can never replace another system's value.
    RuleShadowed,
    /// Two systems outbound-authoritative on one identity attribute.
    ConflictingAuthoritative,
    /// An identity attribute nobody writes.
    UnwrittenAttribute,
    /// Computed attributes in a cycle.
    ComputedCycle,
    /// `delete_unowned` without a `max_deleted` threshold.
    UnguardedDeletion,
    /// Neither `max_rejected` nor `max_pct_rejected`.
    UnguardedRejections,
}

impl LintKind {
    /// The stable `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            LintKind::UnstableRoundTrip => "unstable_round_trip",
            LintKind::RuleNeverWrites => "rule_never_writes",
            LintKind::RuleShadowed => "rule_shadowed",
            LintKind::ConflictingAuthoritative => "conflicting_authoritative",
            LintKind::UnwrittenAttribute => "unwritten_attribute",
            LintKind::ComputedCycle => "computed_cycle",
            LintKind::UnguardedDeletion => "unguarded_deletion",
            LintKind::UnguardedRejections => "unguarded_rejections",
        }
    }
}

/// One risk, with the rules involved (as JSON paths) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LintFinding {
    /// What kind of risk.
    pub kind: LintKind,
    /// The rules or attributes involved, as JSON paths (e.g. `systems.ad.flows[2]`).
    pub rules: Vec<String>,
    /// Why it is a risk, in words.
    pub message: String,
}

impl fmt::Display for LintFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}]: {}",
            self.kind.as_str(),
            self.rules.join(", "),
            self.message
        )
    }
}

/// Lints a configuration (valid or not) with built-in sample values.
pub fn lint(config: &Config) -> Vec<LintFinding> {
    lint_with_samples(config, &BTreeMap::new())
}

/// Lints a configuration; `samples` adds sample values per identity attribute for the
/// round-trip check (JSON values, typed by the attribute's declaration).
pub fn lint_with_samples(config: &Config, samples: &BTreeMap<String, Vec<serde_json::Value>>) -> Vec<LintFinding> {
    let mut findings = Vec::new();
    round_trips(config, samples, &mut findings);
    scores(config, &mut findings);
    authoritative(config, &mut findings);
    unwritten(config, &mut findings);
    deletions(config, &mut findings);
    if let Some(cycle) = computed_cycle(config) {
        findings.push(LintFinding {
            kind: LintKind::ComputedCycle,
            rules: cycle
                .iter()
                .map(|a| format!("identity.attributes.{a}.computed"))
                .collect(),
            message: format!(
                "computed attributes depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ),
        });
    }
    findings
}

/// A fixed `now` for evaluating transforms in the lint: the lint must not read a clock.
fn lint_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).single().unwrap_or_default()
}

fn builtin_samples(ty: ValueType) -> Vec<Scalar> {
    let text = |s: &str| Scalar::Text(s.to_owned().into());
    match ty {
        ValueType::String => [
            "Jane Doe",
            "jane.doe@example.com",
            "O'Brien",
            "ÉLODIE Müller",
            " padded ",
            "Sales",
        ]
        .iter()
        .map(|s| text(s))
        .collect(),
        ValueType::Reference => vec![text("E1001"), text("e-42")],
        ValueType::Integer => vec![Scalar::Integer(0), Scalar::Integer(42), Scalar::Integer(-7)],
        ValueType::Boolean => vec![Scalar::Boolean(true), Scalar::Boolean(false)],
        ValueType::Date => ["2026-01-15", "1999-12-31"]
            .iter()
            .filter_map(|d| Scalar::parse(d, ty))
            .collect(),
        ValueType::Datetime => ["2026-01-15T08:30:00Z"]
            .iter()
            .filter_map(|d| Scalar::parse(d, ty))
            .collect(),
    }
}

/// An inbound and an outbound side joining the same account and identity attributes.
struct RoundTrip<'a> {
    system: &'a str,
    config: &'a SystemConfig,
    inbound: (usize, &'a FlowRule),
    outbound: (usize, &'a FlowRule),
}

fn round_trips(config: &Config, samples: &BTreeMap<String, Vec<serde_json::Value>>, findings: &mut Vec<LintFinding>) {
    let mut pairs = Vec::new();
    for (name, system) in &config.systems {
        for (i, rule) in system.flows.iter().enumerate() {
            if !rule.enabled || !rule.direction.is_inbound() {
                continue;
            }
            for (j, other) in system.flows.iter().enumerate() {
                let joins = other.account == rule.account && other.identity == rule.identity;
                if other.enabled && other.direction.is_outbound() && joins {
                    pairs.push(RoundTrip {
                        system: name,
                        config: system,
                        inbound: (i, rule),
                        outbound: (j, other),
                    });
                }
            }
        }
    }
    let now = lint_now();
    for pair in pairs {
        let (i, inbound) = pair.inbound;
        let (j, outbound) = pair.outbound;
        if inbound.transform_in.is_none() && outbound.transform_out.is_none() {
            continue;
        }
        let Some(id_decl) = config.identity.attributes.get(&inbound.identity) else {
            continue;
        };
        let Some(acct_decl) = pair.config.attribute(&inbound.account) else {
            continue;
        };
        let mut values: Vec<Value> = builtin_samples(id_decl.value_type)
            .into_iter()
            .map(Value::single)
            .collect();
        for raw in samples.get(inbound.identity.as_str()).into_iter().flatten() {
            if let Ok(v) = Value::from_json(raw, id_decl.value_type, id_decl.multi, id_decl.case_exact) {
                values.push(v);
            }
        }
        let out = |identity_value: &Value| -> Option<Value> {
            let v = match &outbound.transform_out {
                None => identity_value.clone(),
                Some(t) => eval_one(t, &outbound.identity, identity_value, now)?,
            };
            v.convert(acct_decl.value_type, acct_decl.multi, acct_decl.case_exact)
                .ok()
        };
        let back = |account_value: &Value| -> Option<Value> {
            let v = match &inbound.transform_in {
                None => account_value.clone(),
                Some(t) => eval_one(t, &inbound.account, account_value, now)?,
            };
            v.convert(id_decl.value_type, id_decl.multi, id_decl.case_exact).ok()
        };
        let unstable = values.iter().find_map(|v| {
            let sent = out(v)?;
            let returned = back(&sent)?;
            (!returned.same_as(v, id_decl.case_exact)).then(|| (v.clone(), sent, returned))
        });
        if let Some((v, sent, returned)) = unstable {
            let rules = if i == j {
                vec![format!("systems.{}.flows[{i}]", pair.system)]
            } else {
                vec![
                    format!("systems.{}.flows[{i}]", pair.system),
                    format!("systems.{}.flows[{j}]", pair.system),
                ]
            };
            findings.push(LintFinding {
                kind: LintKind::UnstableRoundTrip,
                rules,
                message: format!(
                    "identity `{}` = {v} is sent to `{}` as {sent}, which comes back as {returned}: \
                     the transforms are not inverse, so the value will flap or loop",
                    inbound.identity, inbound.account
                ),
            });
        }
    }
}

/// Evaluates a transform with one attribute set (others empty). `None` on error.
fn eval_one(t: &Transform, name: &str, value: &Value, now: DateTime<Utc>) -> Option<Value> {
    let mut source: BTreeMap<String, Value> = t.attributes().into_iter().map(|a| (a, Value::Empty)).collect();
    source.insert(name.to_owned(), value.clone());
    t.eval(&source, now).ok()
}

fn scores(config: &Config, findings: &mut Vec<LintFinding>) {
    // identity attribute -> (path, system, rule) of every enabled inbound rule
    let mut writers: BTreeMap<&str, Vec<(String, &str, &FlowRule)>> = BTreeMap::new();
    for (name, system) in &config.systems {
        for (i, rule) in system.inbound_rules() {
            writers
                .entry(rule.identity.as_str())
                .or_default()
                .push((format!("systems.{name}.flows[{i}]"), name, rule));
        }
    }
    for (attribute, rules) in &writers {
        for (path, system, rule) in rules {
            if rule.create == 0 && rule.update == 0 && rule.delete == 0 {
                findings.push(LintFinding {
                    kind: LintKind::RuleNeverWrites,
                    rules: vec![path.clone()],
                    message: format!(
                        "every score of this rule for `{attribute}` is 0, so it can never write the attribute"
                    ),
                });
                continue;
            }
            let best = rule.create.max(rule.update);
            let stronger = rules.iter().find(|(_, other_system, other)| {
                other_system != system && other.create.min(other.update) > best && other.update > 0
            });
            if let Some((other_path, other_system, other)) = stronger {
                findings.push(LintFinding {
                    kind: LintKind::RuleShadowed,
                    rules: vec![path.clone(), other_path.clone()],
                    message: format!(
                        "its best score for `{attribute}` ({best}) is below {other_system}'s lowest ({}): it can fill \
                         the attribute while {other_system} has no value, but never replace {other_system}'s value",
                        other.create.min(other.update)
                    ),
                });
            }
        }
    }
}

fn authoritative(config: &Config, findings: &mut Vec<LintFinding>) {
    let mut by_attribute: BTreeMap<&str, Vec<(String, &str)>> = BTreeMap::new();
    for (name, system) in &config.systems {
        for (i, rule) in system.outbound_rules().filter(|(_, r)| r.authoritative) {
            by_attribute
                .entry(rule.identity.as_str())
                .or_default()
                .push((format!("systems.{name}.flows[{i}]"), name));
        }
    }
    for (attribute, rules) in by_attribute {
        let mut systems: Vec<&str> = rules.iter().map(|(_, s)| *s).collect();
        systems.dedup();
        if systems.len() >= 2 {
            findings.push(LintFinding {
                kind: LintKind::ConflictingAuthoritative,
                rules: rules.iter().map(|(p, _)| p.clone()).collect(),
                message: format!(
                    "systems {} are all outbound-authoritative on `{attribute}`: each removes every value it did not \
                     get from the identity, so values added in one never survive in the others",
                    systems
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            });
        }
    }
}

fn deletions(config: &Config, findings: &mut Vec<LintFinding>) {
    for (name, system) in &config.systems {
        if system.thresholds.max_rejected.is_none() && system.thresholds.max_pct_rejected.is_none() {
            findings.push(LintFinding {
                kind: LintKind::UnguardedRejections,
                rules: vec![format!("systems.{name}.thresholds")],
                message: format!(
                    "`{name}` has neither `max_rejected` nor `max_pct_rejected`: an export in which every row fails \
                     to parse (a changed date format, a type declared wrong) would be applied as a quiet success"
                ),
            });
        }
        let unowned = system.deprovisioning.as_ref().is_some_and(|d| d.delete_unowned);
        if unowned && system.thresholds.max_deleted.is_none() {
            findings.push(LintFinding {
                kind: LintKind::UnguardedDeletion,
                rules: vec![format!("systems.{name}.deprovisioning.delete_unowned")],
                message: format!(
                    "`{name}` deletes accounts it did not create and has no `max_deleted` threshold: a scope change \
                     or a bad HR import could delete every account of the system without review"
                ),
            });
        }
    }
}

fn unwritten(config: &Config, findings: &mut Vec<LintFinding>) {
    for (name, attr) in &config.identity.attributes {
        if attr.computed.is_some() {
            continue;
        }
        let written = config
            .systems
            .values()
            .any(|s| s.inbound_rules().any(|(_, r)| r.identity == *name));
        if !written {
            findings.push(LintFinding {
                kind: LintKind::UnwrittenAttribute,
                rules: vec![format!("identity.attributes.{name}")],
                message: format!(
                    "no enabled inbound rule writes `{name}` and it is not computed: only direct edits by the host can set it"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(systems: serde_json::Value, identity: serde_json::Value) -> Config {
        serde_json::from_value(json!({ "identity": { "attributes": identity }, "systems": systems })).unwrap()
    }

    fn kinds(c: &Config) -> Vec<&'static str> {
        lint(c).iter().map(|f| f.kind.as_str()).collect()
    }

    fn system(flows: serde_json::Value) -> serde_json::Value {
        json!({
            "schema": { "account_id": "id", "account_name": "id", "attributes": {
                "id": { "type": "string" }, "mail": { "type": "string" }, "groups": { "type": "string", "multi": true } } },
            "flows": flows,
            "thresholds": { "max_pct_rejected": 50.0 }
        })
    }

    #[test]
    fn a_clean_config_has_no_findings() {
        let c = config(
            json!({ "hr": system(json!([
                { "account": "id", "identity": "id", "direction": "inbound", "create": 100, "update": 100 },
                { "account": "mail", "identity": "mail", "direction": "bidirectional", "create": 50, "update": 50,
                  "in": { "lower": { "attr": "mail" } }, "out": { "lower": { "attr": "mail" } } } ])) }),
            json!({ "id": { "type": "string" }, "mail": { "type": "string", "case_exact": false } }),
        );
        assert_eq!(kinds(&c), Vec::<&str>::new());
    }

    #[test]
    fn unstable_round_trip_names_both_rules() {
        let c = config(
            json!({ "ad": system(json!([
                { "account": "mail", "identity": "mail", "direction": "inbound", "create": 50, "update": 50 },
                { "account": "mail", "identity": "mail", "direction": "outbound", "out": { "concat": [ { "attr": "mail" }, "!" ] } } ])) }),
            json!({ "mail": { "type": "string" } }),
        );
        let findings = lint(&c);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].kind, LintKind::UnstableRoundTrip);
        assert_eq!(findings[0].rules, vec!["systems.ad.flows[0]", "systems.ad.flows[1]"]);
        assert!(findings[0].message.contains("Jane Doe!"), "{}", findings[0].message);
    }

    #[test]
    fn zero_and_shadowed_rules() {
        let c = config(
            json!({
                "hr": system(json!([{ "account": "mail", "identity": "mail", "direction": "inbound", "create": 80, "update": 70 }])),
                "ad": system(json!([{ "account": "mail", "identity": "mail", "direction": "inbound", "create": 10, "update": 20 }])),
                "tel": system(json!([{ "account": "mail", "identity": "mail", "direction": "inbound" }]))
            }),
            json!({ "mail": { "type": "string" } }),
        );
        let findings = lint(&c);
        let summary: Vec<(&str, Vec<String>)> = findings.iter().map(|f| (f.kind.as_str(), f.rules.clone())).collect();
        assert_eq!(
            summary,
            vec![
                (
                    "rule_shadowed",
                    vec!["systems.ad.flows[0]".to_owned(), "systems.hr.flows[0]".to_owned()]
                ),
                ("rule_never_writes", vec!["systems.tel.flows[0]".to_owned()]),
            ]
        );
    }

    #[test]
    fn two_authoritative_systems_on_one_attribute() {
        let c = config(
            json!({
                "hr": system(json!([{ "account": "groups", "identity": "groups", "direction": "inbound", "create": 50 }])),
                "ad": system(json!([{ "account": "groups", "identity": "groups", "direction": "outbound", "authoritative": true }])),
                "ldap": system(json!([{ "account": "groups", "identity": "groups", "direction": "outbound", "authoritative": true }]))
            }),
            json!({ "groups": { "type": "string", "multi": true } }),
        );
        assert_eq!(kinds(&c), vec!["conflicting_authoritative"]);
    }

    #[test]
    fn unwritten_and_cyclic_attributes() {
        let c = config(
            json!({}),
            json!({
                "orphan": { "type": "string" },
                "a": { "type": "string", "computed": { "attr": "b" } },
                "b": { "type": "string", "computed": { "attr": "a" } }
            }),
        );
        assert_eq!(kinds(&c), vec!["unwritten_attribute", "computed_cycle"]);
        let cycle = lint(&c).pop().unwrap();
        assert!(cycle.message.contains("a -> b -> a"), "{}", cycle.message);
    }

    #[test]
    fn a_system_needs_a_rejected_row_threshold() {
        let mut hr = system(json!([]));
        hr["thresholds"] = json!({});
        let mut ad = system(json!([]));
        ad["thresholds"] = json!({ "max_rejected": 10 });
        let findings = lint(&config(
            json!({ "hr": hr, "ad": ad, "tel": system(json!([])) }),
            json!({}),
        ));
        let found: Vec<(&str, &[String])> = findings.iter().map(|f| (f.kind.as_str(), f.rules.as_slice())).collect();
        assert_eq!(
            found,
            [("unguarded_rejections", &["systems.hr.thresholds".to_owned()][..])]
        );
    }

    #[test]
    fn deleting_unowned_accounts_needs_a_max_deleted_threshold() {
        let with = |deprovisioning: serde_json::Value, thresholds: serde_json::Value| {
            let mut ad = system(json!([]));
            ad["deprovisioning"] = deprovisioning;
            ad["thresholds"] = thresholds;
            ad["thresholds"]["max_rejected"] = json!(0);
            kinds(&config(json!({ "ad": ad }), json!({})))
        };
        let unowned = json!({ "delete_after_days": 30, "delete_unowned": true });
        assert_eq!(with(unowned.clone(), json!({})), vec!["unguarded_deletion"]);
        assert_eq!(
            with(unowned.clone(), json!({ "max_pct_deleted": 5.0 })),
            vec!["unguarded_deletion"]
        );
        assert!(with(unowned, json!({ "max_deleted": 10 })).is_empty());
        assert!(with(json!({ "delete_after_days": 30 }), json!({})).is_empty());
    }

    #[test]
    fn host_samples_extend_the_round_trip_check() {
        // Dropping `#` is stable on the built-in samples but not on "a#b".
        let c = config(
            json!({ "ad": system(json!([
                { "account": "mail", "identity": "mail", "direction": "bidirectional", "create": 50, "update": 50,
                  "out": { "replace": [ { "attr": "mail" }, "#", "" ] } } ])) }),
            json!({ "mail": { "type": "string" } }),
        );
        assert!(lint(&c).is_empty());
        let samples = BTreeMap::from([("mail".to_owned(), vec![json!("a#b")])]);
        assert_eq!(lint_with_samples(&c, &samples)[0].kind, LintKind::UnstableRoundTrip);
    }
}
