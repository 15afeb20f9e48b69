//! Checking a step's expectations against the engine's state and the step's outcome.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

use crate::engine::Engine;
use crate::model::{IdentityId, LinkState};
use crate::outbound::Op;
use crate::prepare::key_text;
use crate::scenario::format::{AccountRef, BlockedExpect, Expect};
use crate::scenario::StepOutcome;
use crate::store::Store;
use crate::text::Text;
use crate::value::Value;

type Miss = (String, String, String);

/// Resolves an identity selector `ATTR=VALUE` to the one identity holding that value.
pub(crate) fn select<S: Store>(engine: &Engine<S>, selector: &str) -> Result<IdentityId, String> {
    let Some((attribute, value)) = selector.split_once('=') else {
        return Err(format!("`{selector}` is not of the form ATTR=VALUE"));
    };
    if !engine.config().identity.attributes.contains_key(attribute) {
        return Err(format!("identity attribute `{attribute}` is not declared"));
    }
    let found = engine
        .find_identities(attribute, &Json::String(value.to_owned()))
        .map_err(|e| e.to_string())?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!("no identity has {attribute} = `{value}`")),
        many => Err(format!("{} identities have {attribute} = `{value}`", many.len())),
    }
}

fn show(v: &Json) -> String {
    v.to_string()
}

/// Every unmet expectation as (path, expected, actual).
pub(crate) fn check<S: Store>(engine: &Engine<S>, expect: &Expect, outcome: &StepOutcome) -> Vec<Miss> {
    let mut misses: Vec<Miss> = Vec::new();
    let mut miss = |path: String, expected: String, actual: String| misses.push((path, expected, actual));

    if let Some(identities) = &expect.identities {
        for (selector, attributes) in identities {
            let id = match select(engine, selector) {
                Ok(id) => id,
                Err(e) => {
                    miss(format!("identities.{selector}"), "one identity".into(), e);
                    continue;
                }
            };
            let Ok(Some(identity)) = engine.identity(id) else {
                continue;
            };
            for (attribute, expected) in attributes {
                let path = format!("identities.{selector}.{attribute}");
                let Some(decl) = engine.config().identity.attributes.get(attribute.as_str()) else {
                    miss(path, show(expected), "no such identity attribute".into());
                    continue;
                };
                let actual = identity.value(attribute);
                match Value::from_json(expected, decl.value_type, decl.multi, decl.case_exact) {
                    // Sets compare as sets: a stored set keeps the order of the case rule
                    // it was written under.
                    Ok(want) if want.same_as(actual, true) => {}
                    Ok(_) => miss(path, show(expected), show(&actual.to_json())),
                    Err(_) => miss(
                        path,
                        format!("{} (not a valid {})", show(expected), decl.value_type),
                        show(&actual.to_json()),
                    ),
                }
            }
        }
    }

    if let Some(count) = expect.identity_count {
        let actual = engine.identity_count().unwrap_or(0);
        if actual != count {
            miss("identity_count".into(), count.to_string(), actual.to_string());
        }
    }

    if let Some(provenance) = &expect.provenance {
        for (selector, attributes) in provenance {
            let id = match select(engine, selector) {
                Ok(id) => id,
                Err(e) => {
                    miss(format!("provenance.{selector}"), "one identity".into(), e);
                    continue;
                }
            };
            let Ok(Some(identity)) = engine.identity(id) else {
                continue;
            };
            for (attribute, expected) in attributes {
                let actual = identity.provenance(attribute.as_str()).map(|p| p.system.to_string());
                if &actual != expected {
                    miss(
                        format!("provenance.{selector}.{attribute}"),
                        format!("{expected:?}"),
                        format!("{actual:?}"),
                    );
                }
            }
        }
    }

    if let Some(accounts) = &expect.accounts {
        for (system, keys) in accounts {
            let Some(schema) = engine.config().system(system) else {
                miss(
                    format!("accounts.{system}"),
                    "a configured system".into(),
                    "unknown system".into(),
                );
                continue;
            };
            for (key, expected) in keys {
                let path = format!("accounts.{system}.{key}");
                let actual = engine.account(system, key).ok().flatten();
                match (expected, actual) {
                    (None, None) => {}
                    (None, Some(_)) => miss(path, "absent".into(), "stored".into()),
                    (Some(_), None) => miss(path, "stored".into(), "absent".into()),
                    (Some(attributes), Some(account)) => {
                        for (attribute, expected) in attributes {
                            let path = format!("{path}.{attribute}");
                            let Some(decl) = schema.attribute(attribute) else {
                                miss(path, show(expected), "no such account attribute".into());
                                continue;
                            };
                            let actual = account.value(attribute);
                            match Value::from_json(expected, decl.value_type, decl.multi, decl.case_exact) {
                                // Sets compare as sets: a stored set keeps the order of the case rule
                                // it was written under.
                                Ok(want) if want.same_as(actual, true) => {}
                                _ => miss(path, show(expected), show(&actual.to_json())),
                            }
                        }
                    }
                }
            }
        }
    }

    if let Some(links) = &expect.links {
        for (system, keys) in links {
            for (key, expected) in keys {
                let path = format!("links.{system}.{key}");
                let actual = engine.account(system, key).ok().flatten().and_then(|a| a.identity());
                let wanted = match expected {
                    None => None,
                    Some(selector) => match select(engine, selector) {
                        Ok(id) => Some(id),
                        Err(e) => {
                            miss(path, selector.clone(), e);
                            continue;
                        }
                    },
                };
                if wanted != actual {
                    miss(
                        path,
                        format!("{expected:?}"),
                        actual.map_or("not linked".into(), |id| id.to_string()),
                    );
                }
            }
        }
    }

    if let Some(counts) = &expect.counts {
        let actual = serde_json::to_value(outcome.counts).unwrap_or(Json::Null);
        for (name, expected) in counts {
            match actual.get(name).and_then(Json::as_u64) {
                Some(v) if v == *expected => {}
                Some(v) => miss(format!("counts.{name}"), expected.to_string(), v.to_string()),
                None => miss(format!("counts.{name}"), expected.to_string(), "no such counter".into()),
            }
        }
    }

    if let Some(blocked) = &expect.blocked {
        let actual: BTreeSet<&str> = outcome.exceeded.iter().map(String::as_str).collect();
        let ok = match blocked {
            BlockedExpect::Flag(flag) => *flag != actual.is_empty(),
            BlockedExpect::Exceeded(e) => e.exceeded.iter().map(String::as_str).collect::<BTreeSet<_>>() == actual,
        };
        if !ok {
            let shown = if actual.is_empty() {
                "false".to_owned()
            } else {
                format!("{{\"exceeded\": {actual:?}}}")
            };
            miss(
                "blocked".into(),
                serde_json::to_string(blocked).unwrap_or_default(),
                shown,
            );
        }
    }

    if let Some(errors) = &expect.errors {
        let expected: BTreeSet<(String, Option<String>)> =
            errors.iter().map(|e| (e.kind.clone(), e.key.clone())).collect();
        let actual: BTreeSet<(String, Option<String>)> = outcome.errors.iter().cloned().collect();
        if expected != actual {
            miss("errors".into(), format_pairs(&expected), format_pairs(&actual));
        }
    }

    if let Some(rejected) = &expect.rejected {
        let mut expected = BTreeSet::new();
        for r in rejected {
            match select(engine, &r.identity) {
                Ok(id) => {
                    expected.insert((id, r.attribute.clone(), r.system.clone(), r.reason.clone()));
                }
                Err(e) => miss("rejected".into(), r.identity.clone(), e),
            }
        }
        let actual: BTreeSet<_> = outcome.rejected.iter().cloned().collect();
        if expected != actual {
            let render = |set: &BTreeSet<(IdentityId, String, String, String)>| {
                let items: Vec<String> = set
                    .iter()
                    .map(|(i, a, s, r)| format!("{i} {a} from {s}: {r}"))
                    .collect();
                format!("[{}]", items.join(", "))
            };
            miss("rejected".into(), render(&expected), render(&actual));
        }
    }

    for (name, wanted, state) in [
        ("unmatched", &expect.unmatched, false),
        ("ambiguous", &expect.ambiguous, true),
    ] {
        let Some(wanted) = wanted else { continue };
        let expected: BTreeSet<(String, String)> = wanted
            .iter()
            .map(|AccountRef { system, key }| canonical_key(engine, system, key))
            .collect();
        let actual: BTreeSet<(String, String)> = engine
            .unlinked()
            .unwrap_or_default()
            .into_iter()
            .filter(|u| matches!(u.state, LinkState::Ambiguous(_)) == state)
            .map(|u| (u.system, u.key))
            .collect();
        if expected != actual {
            miss(name.into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(plan) = &expect.plan {
        let mut expected = BTreeSet::new();
        for op in plan {
            match normalise_expected_op(engine, op) {
                Ok(op) => {
                    expected.insert(sorted(op).to_string());
                }
                Err(e) => miss("plan".into(), show(op), e),
            }
        }
        let actual: BTreeSet<String> = outcome
            .plan
            .iter()
            .map(|op| sorted(render_op(op)).to_string())
            .collect();
        if expected != actual {
            miss("plan".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(changed) = &expect.changed {
        let mut expected = BTreeSet::new();
        for selector in changed {
            match select(engine, selector) {
                Ok(id) => {
                    expected.insert(id);
                }
                Err(e) => miss("changed".into(), selector.clone(), e),
            }
        }
        let actual: BTreeSet<IdentityId> = outcome.changed.iter().copied().collect();
        if expected != actual {
            miss("changed".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(expected) = &expect.next_due {
        let render = |at: Option<DateTime<Utc>>, ids: &BTreeSet<IdentityId>| match at {
            None => "null".to_owned(),
            Some(at) => format!("{} {ids:?}", at.to_rfc3339()),
        };
        let wanted = match expected {
            Json::Null => Ok((None, BTreeSet::new())),
            Json::Object(o) => {
                let at = o
                    .get("at")
                    .and_then(Json::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                let ids: Result<BTreeSet<IdentityId>, String> = o
                    .get("identities")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .map(|s| select(engine, s.as_str().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_else(|| Ok(BTreeSet::new()));
                match (at, ids) {
                    (Some(at), Ok(ids)) => Ok((Some(at), ids)),
                    (None, _) => Err("`at` must be an RFC 3339 time".to_owned()),
                    (_, Err(e)) => Err(e),
                }
            }
            _ => Err("null or {\"at\": T, \"identities\": [SEL, ...]}".to_owned()),
        };
        match (wanted, engine.next_due(outcome.at)) {
            (Err(e), _) => miss("next_due".into(), show(expected), e),
            (_, Err(e)) => miss("next_due".into(), show(expected), e.to_string()),
            (Ok((at, ids)), Ok(due)) => {
                let actual: BTreeSet<IdentityId> = due.identities.iter().copied().collect();
                if at != due.at || (at.is_some() && ids != actual) {
                    miss("next_due".into(), render(at, &ids), render(due.at, &actual));
                }
            }
        }
    }

    if let Some(preview) = &expect.preview {
        let mut expected = BTreeSet::new();
        for p in preview {
            let id = match select(engine, &p.identity) {
                Ok(id) => id,
                Err(e) => {
                    miss("preview".into(), p.identity.clone(), e);
                    continue;
                }
            };
            // Typed by the declaration in force when stated; sets compare as sets.
            let value = engine
                .config()
                .identity
                .attributes
                .get(p.attribute.as_str())
                .and_then(|d| Value::from_json(&p.value, d.value_type, d.multi, d.case_exact).ok())
                .map_or_else(|| sorted(p.value.clone()), |v| sorted_set(v.to_json()));
            expected.insert((id, p.attribute.clone(), value.to_string()));
        }
        let actual: BTreeSet<(IdentityId, String, String)> = outcome
            .preview
            .iter()
            .map(|(id, attribute, value)| (*id, attribute.clone(), sorted_set(value.to_json()).to_string()))
            .collect();
        if expected != actual {
            miss("preview".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(diagnosis) = &expect.diagnosis {
        // An expected finding without `columns` matches its kind whatever the columns.
        let loose: BTreeSet<&str> = diagnosis
            .iter()
            .filter(|d| d.columns.is_none())
            .map(|d| d.kind.as_str())
            .collect();
        let expected: BTreeSet<(String, Option<Vec<String>>)> = diagnosis
            .iter()
            .map(|d| {
                let mut columns = d.columns.clone();
                if let Some(c) = &mut columns {
                    c.sort();
                }
                (d.kind.clone(), columns)
            })
            .collect();
        let actual: BTreeSet<(String, Option<Vec<String>>)> = outcome
            .diagnosis
            .iter()
            .map(|(kind, columns)| {
                let columns = (!loose.contains(kind.as_str())).then(|| columns.clone());
                (kind.clone(), columns)
            })
            .collect();
        if expected != actual {
            miss("diagnosis".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(skipped) = &expect.skipped {
        let mut expected = BTreeSet::new();
        for s in skipped {
            match select(engine, &s.identity) {
                Ok(id) => {
                    expected.insert((s.system.clone(), id, s.reason.clone()));
                }
                Err(e) => miss("skipped".into(), s.identity.clone(), e),
            }
        }
        let actual: BTreeSet<(String, IdentityId, String)> = outcome.skipped.iter().cloned().collect();
        if expected != actual {
            miss("skipped".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }

    if let Some(loops) = &expect.loops {
        let expected: BTreeSet<(String, String, String)> = loops
            .iter()
            .map(|l| {
                let (system, key) = canonical_key(engine, &l.system, &l.account);
                (system, key, l.attribute.clone())
            })
            .collect();
        let actual: BTreeSet<(String, String, String)> = engine
            .loops()
            .unwrap_or_default()
            .into_iter()
            .map(|l| (l.system, l.account, l.attribute))
            .collect();
        if expected != actual {
            miss("loops".into(), format!("{expected:?}"), format!("{actual:?}"));
        }
    }
    if let Some(lint) = &expect.lint {
        let expected: BTreeSet<&str> = lint.iter().map(|l| l.kind.as_str()).collect();
        let findings = crate::lint::lint(engine.config().config());
        let actual: BTreeSet<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        if expected != actual {
            let detail: Vec<String> = findings.iter().map(ToString::to_string).collect();
            miss(
                "lint".into(),
                format!("{expected:?}"),
                format!("{actual:?} ({})", detail.join("; ")),
            );
        }
    }
    if let Some(pending) = &expect.pending {
        let inbox = engine.inbox().map(|i| i.len()).unwrap_or(0);
        let outbox = engine.outbox().map(|o| o.len()).unwrap_or(0);
        for (name, want, have) in [("inbox", pending.inbox, inbox), ("outbox", pending.outbox, outbox)] {
            if want.is_some_and(|w| w != have) {
                miss(
                    format!("pending.{name}"),
                    want.unwrap_or(0).to_string(),
                    have.to_string(),
                );
            }
        }
    }
    misses
}

/// The same JSON with every object's keys in sorted order, so that equal ops render
/// equally whatever order their file wrote them in.
fn sorted(json: Json) -> Json {
    match json {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A value's JSON with the items of a set in a fixed order.
fn sorted_set(json: Json) -> Json {
    match json {
        Json::Array(mut items) => {
            items.sort_by_key(ToString::to_string);
            Json::Array(items)
        }
        other => other,
    }
}

fn format_pairs(set: &BTreeSet<(String, Option<String>)>) -> String {
    let items: Vec<String> = set
        .iter()
        .map(|(k, key)| match key {
            Some(key) => format!("{{{k} {key}}}"),
            None => format!("{{{k}}}"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn canonical_key<S: Store>(engine: &Engine<S>, system: &str, key: &str) -> (String, String) {
    let exact = engine
        .config()
        .system(system)
        .is_none_or(crate::config::SystemConfig::key_case_exact);
    (
        system.to_owned(),
        key_text(&Json::String(key.to_owned()), exact).unwrap_or_default(),
    )
}

/// The canonical JSON of an op: values normalised, empty maps left out.
fn render_op(op: &Op) -> Json {
    let values = |m: &mut dyn Iterator<Item = (&Text, &Value)>| -> serde_json::Map<String, Json> {
        m.map(|(k, v)| (k.to_string(), v.to_json())).collect()
    };
    let lists = |m: &crate::AttrMap<Vec<crate::value::Scalar>>| -> serde_json::Map<String, Json> {
        m.iter()
            .map(|(k, items)| {
                let mut rendered: Vec<Json> = items.iter().map(|s| s.to_json()).collect();
                rendered.sort_by_key(|j| j.to_string());
                (k.to_string(), Json::Array(rendered))
            })
            .collect()
    };
    match op {
        Op::Create(c) => {
            json!({"op": "create", "system": c.system, "identity": c.identity.get(), "attributes": values(&mut c.attributes.iter())})
        }
        Op::Update(u) => {
            let mut o = serde_json::Map::new();
            o.insert("op".into(), json!("update"));
            o.insert("system".into(), json!(u.system));
            o.insert("account".into(), json!(u.account));
            for (name, map) in [
                ("set", values(&mut u.set.iter())),
                ("add", lists(&u.add)),
                ("remove", lists(&u.remove)),
            ] {
                if !map.is_empty() {
                    o.insert(name.into(), Json::Object(map));
                }
            }
            Json::Object(o)
        }
        Op::Delete(d) => json!({"op": "delete", "system": d.system, "account": d.account}),
    }
}

/// An expected op in the canonical form of `render_op`, its values typed by the system's
/// schema and its identity selector resolved.
fn normalise_expected_op<S: Store>(engine: &Engine<S>, op: &Json) -> Result<Json, String> {
    let obj = op.as_object().ok_or("an op must be an object")?;
    let field = |name: &str| {
        obj.get(name)
            .and_then(Json::as_str)
            .ok_or(format!("the op needs a string `{name}`"))
    };
    let kind = field("op")?;
    let system_name = field("system")?;
    let system = engine
        .config()
        .system(system_name)
        .ok_or(format!("system `{system_name}` is not configured"))?;
    let allowed: &[&str] = match kind {
        "create" => &["op", "system", "identity", "attributes"],
        "update" => &["op", "system", "account", "set", "add", "remove"],
        "delete" => &["op", "system", "account"],
        other => return Err(format!("unknown op `{other}`")),
    };
    if let Some(unknown) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!("unknown key `{unknown}` in a {kind} op"));
    }
    let typed = |name: &str, multi_list: bool| -> Result<serde_json::Map<String, Json>, String> {
        let mut out = serde_json::Map::new();
        let Some(map) = obj.get(name) else { return Ok(out) };
        let map = map.as_object().ok_or(format!("`{name}` must be an object"))?;
        for (attribute, raw) in map {
            let decl = system
                .attribute(attribute)
                .ok_or(format!("`{attribute}` is not an attribute of `{system_name}`"))?;
            let multi = decl.multi || multi_list;
            let value = Value::from_json(raw, decl.value_type, multi, decl.case_exact)
                .map_err(|_| format!("`{raw}` is not a valid value for `{attribute}`"))?;
            let mut rendered = value.to_json();
            if multi_list {
                if let Json::Array(items) = &mut rendered {
                    items.sort_by_key(|j| j.to_string());
                }
            }
            out.insert(attribute.clone(), rendered);
        }
        Ok(out)
    };
    match kind {
        "delete" => {
            let (_, key) = canonical_key(engine, system_name, field("account")?);
            Ok(json!({"op": "delete", "system": system_name, "account": key}))
        }
        "create" => {
            let selector = field("identity")?;
            let id = select(engine, selector)?;
            Ok(
                json!({"op": "create", "system": system_name, "identity": id.get(), "attributes": typed("attributes", false)?}),
            )
        }
        _ => {
            let account = field("account")?;
            let (_, key) = canonical_key(engine, system_name, account);
            let mut o = serde_json::Map::new();
            o.insert("op".into(), json!("update"));
            o.insert("system".into(), json!(system_name));
            o.insert("account".into(), json!(key));
            for (name, list) in [("set", false), ("add", true), ("remove", true)] {
                let map = typed(name, list)?;
                if !map.is_empty() {
                    o.insert(name.into(), Json::Object(map));
                }
            }
            Ok(Json::Object(o))
        }
    }
}
