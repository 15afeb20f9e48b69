//! Correlation (SPEC 3): ordered conjunction rules that link an account to exactly one
//! identity. An empty value never matches; several matches make the account ambiguous.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::config::{Config, SystemConfig};
use crate::engine::AccountSource;
use crate::model::{Account, IdentityId};
use crate::store::{Store, StoreError};

/// The outcome of correlating one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Correlation {
    /// The first rule that matched found exactly this identity.
    Linked(IdentityId),
    /// The first rule that matched found several identities (later rules not tried).
    Ambiguous(Vec<IdentityId>),
    /// No rule matched.
    NoMatch,
}

/// The identity attributes `Store::find_identities` must answer for: those named by
/// correlation rules and by reference `match` settings, with their `case_exact`.
pub(crate) fn index_spec(config: &Config) -> Vec<(String, bool)> {
    let mut names = BTreeSet::new();
    for system in config.systems.values() {
        for pair in system.correlation.iter().flatten() {
            names.insert(pair.identity.clone());
        }
        for attr in system.schema.attributes.values() {
            names.extend(attr.match_attribute.clone());
        }
    }
    for attr in config.identity.attributes.values() {
        names.extend(attr.match_attribute.clone());
    }
    names
        .into_iter()
        .filter_map(|n| {
            config
                .identity
                .attributes
                .get(n.as_str())
                .map(|a| (n.clone(), a.case_exact))
        })
        .collect()
}

/// Tries the system's rules in order against the identities in the store.
pub(crate) fn correlate(
    config: &Config,
    system: &SystemConfig,
    account: &Account,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Correlation, StoreError> {
    'rules: for rule in &system.correlation {
        let mut matched: Option<BTreeSet<IdentityId>> = None;
        for pair in rule {
            let Some(target) = config.identity.attributes.get(pair.identity.as_str()) else {
                continue 'rules;
            };
            // The pair's own transform, else the `in` transform of a flow rule joining
            // the same attributes, else the raw account value. A transform that fails
            // makes the rule not match.
            let transform = pair.transform.as_ref().or_else(|| {
                system
                    .flows
                    .iter()
                    .find(|r| r.account == pair.account && r.identity == pair.identity && r.direction.is_inbound())
                    .and_then(|r| r.transform_in.as_ref())
            });
            let value = match transform {
                None => account.value(&pair.account).clone(),
                Some(t) => match t.eval(
                    &AccountSource {
                        system,
                        attributes: &account.attributes,
                    },
                    now,
                ) {
                    Ok(v) => v,
                    Err(_) => continue 'rules,
                },
            };
            if value.is_empty() {
                continue 'rules;
            }
            // Values are compared as the identity attribute's type and case rule.
            let mut found = BTreeSet::new();
            for scalar in value.scalars() {
                let Some(converted) = scalar.convert(target.value_type) else {
                    continue;
                };
                found.extend(store.find_identities(&pair.identity, &converted.match_key(target.case_exact))?);
            }
            let narrowed = match matched {
                None => found,
                Some(previous) => previous.intersection(&found).copied().collect(),
            };
            if narrowed.is_empty() {
                continue 'rules;
            }
            matched = Some(narrowed);
        }
        match matched {
            Some(ids) if ids.len() == 1 => {
                if let Some(id) = ids.into_iter().next() {
                    return Ok(Correlation::Linked(id));
                }
            }
            Some(ids) if ids.len() > 1 => return Ok(Correlation::Ambiguous(ids.into_iter().collect())),
            _ => {}
        }
    }
    Ok(Correlation::NoMatch)
}
