//! Replacing the configuration while accounts are stored (SPEC 2.2): key changes,
//! removed attributes, narrowed arity and changed types are checked against the stored
//! accounts; every conflict is reported together and a refused change changes nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SystemConfig;
use crate::engine::Engine;
use crate::error::{ConfigChangeError, SchemaChangeProblem};
use crate::model::{Account, IdentityId};
use crate::prepare::key_text;
use crate::processing::{recompute_scope, ProcessReport};
use crate::store::{Store, StoreError};
use crate::validate::ValidatedConfig;
use crate::value::Value;

/// What a configuration replacement did to stored data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ConfigChange {
    /// Conflicts that `force` overrode.
    pub forced: Vec<String>,
    /// Systems whose stored accounts were rewritten (their pending plans become stale).
    pub touched_systems: Vec<String>,
    /// Account values dropped, by system.
    pub dropped_values: BTreeMap<String, usize>,
    /// The identities changed, by id (SPEC 10.1): values of removed attributes dropped,
    /// or scope membership changed by a changed `scope` (re-evaluated at `now`).
    #[serde(default)]
    pub changed: Vec<IdentityId>,
}

impl<S: Store> Engine<S> {
    /// Replaces the configuration. Conflicts with stored accounts refuse the change
    /// unless `force` is set: a changed `account_id` / `account_name` (forced: accounts
    /// are re-keyed by the new key attribute where it gives a unique value), a removed
    /// attribute holding values or a removed system holding accounts (forced: dropped;
    /// identity values stay), a type change that stored values do not survive (forced:
    /// dropped). An attribute made single-valued while an account holds several values
    /// is refused even when forced.
    pub fn replace_config(
        &mut self,
        new: ValidatedConfig,
        force: bool,
        now: DateTime<Utc>,
    ) -> Result<ConfigChange, ConfigChangeError> {
        let old = self.config().clone();
        let mut problems = Vec::new();
        let mut rewrites: Vec<(String, Vec<Account>, Vec<String>, usize)> = Vec::new();
        let mut removed_systems = Vec::new();
        let mut unstored_changes = Vec::new();
        for (name, old_system) in &old.systems {
            let mut accounts = Vec::new();
            self.store().visit_accounts(name, &mut |a| accounts.push(a.clone()))?;
            let schema_changed = new.system(name).is_none_or(|n| n.schema != old_system.schema);
            if accounts.is_empty() {
                // Nothing stored to check, but a plan computed under the old schema
                // must not be applied under the new one.
                if schema_changed {
                    unstored_changes.push(name.clone());
                }
                continue;
            }
            let Some(new_system) = new.system(name) else {
                problems.push(SchemaChangeProblem::SystemHasAccounts {
                    system: name.clone().into(),
                    accounts: accounts.len(),
                });
                removed_systems.push(name.clone());
                continue;
            };
            if old_system.schema == new_system.schema {
                continue;
            }
            let (rewritten, removed_keys, dropped) =
                check_system(name, old_system, new_system, accounts, &mut problems);
            rewrites.push((name.clone().into(), rewritten, removed_keys, dropped));
        }
        // Under `force`, only the problems force cannot override are refusals.
        let refusals: Vec<SchemaChangeProblem> = problems.iter().filter(|p| !force || !p.forcible()).cloned().collect();
        if !refusals.is_empty() {
            return Err(ConfigChangeError::Refused { problems: refusals });
        }
        let mut change = ConfigChange {
            forced: problems.iter().map(ToString::to_string).collect(),
            ..ConfigChange::default()
        };
        let store = self.store_mut();
        store.begin()?;
        let result = (|| {
            for system in &unstored_changes {
                store.bump_system_version(system)?;
            }
            for system in &removed_systems {
                store.remove_system(system)?;
                store.bump_system_version(system)?;
                change.touched_systems.push(system.clone().into());
            }
            for (system, accounts, removed_keys, dropped) in rewrites {
                store.remove_accounts(&system, &removed_keys)?;
                store.put_accounts(&system, accounts)?;
                store.bump_system_version(&system)?;
                change.touched_systems.push(system.clone());
                if dropped > 0 {
                    change.dropped_values.insert(system, dropped);
                }
            }
            // Identity values of attributes that no longer exist are dropped; a changed
            // scope is re-evaluated for every identity at once (SPEC 11.1), so that no
            // plan acts on a membership the new configuration does not give.
            let scopes_changed = old.systems.len() != new.systems.len()
                || old
                    .systems
                    .iter()
                    .any(|(name, s)| new.system(name).is_none_or(|n| n.scope != s.scope));
            let mut rewritten = Vec::new();
            let mut report = ProcessReport::default();
            store.visit_identities(&mut |i| {
                let orphaned = i.attributes().keys().any(|a| !new.identity.attributes.contains_key(a));
                if !orphaned && !scopes_changed {
                    return;
                }
                let mut i = i.clone();
                i.retain_attributes(|a| new.identity.attributes.contains_key(a));
                let rescoped = scopes_changed && recompute_scope(&new, &mut i, now, &mut report);
                if orphaned || rescoped {
                    change.changed.push(i.id);
                    rewritten.push(i);
                }
            })?;
            store.put_identities(rewritten)?;
            Ok::<(), StoreError>(())
        })();
        if let Err(e) = result {
            self.store_mut().rollback();
            return Err(e.into());
        }
        self.store_mut().commit()?;
        self.set_config(new)?;
        Ok(change)
    }
}

/// Checks one system's stored accounts against its new schema and returns them
/// rewritten as they would be stored under it (the forced outcome), the keys to remove
/// (re-keyed accounts), and how many values would be dropped.
fn check_system(
    name: &str,
    old: &SystemConfig,
    new: &SystemConfig,
    mut accounts: Vec<Account>,
    problems: &mut Vec<SchemaChangeProblem>,
) -> (Vec<Account>, Vec<String>, usize) {
    for (field, from, to) in [
        ("account_id", &old.schema.account_id, &new.schema.account_id),
        ("account_name", &old.schema.account_name, &new.schema.account_name),
    ] {
        if from != to {
            problems.push(SchemaChangeProblem::ImmutableKeyChange {
                system: name.to_owned(),
                field: field.to_owned(),
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    let mut dropped = 0;
    for (attribute, old_decl) in &old.schema.attributes {
        let holders = accounts.iter().filter(|a| !a.value(attribute).is_empty()).count();
        let Some(new_decl) = new.attribute(attribute) else {
            if holders > 0 {
                problems.push(SchemaChangeProblem::AttributeHasValues {
                    system: name.to_owned(),
                    attribute: attribute.clone().into(),
                    accounts: holders,
                });
                dropped += holders;
                for a in &mut accounts {
                    a.set(attribute, Value::Empty);
                    a.pushed.remove(attribute.as_str());
                }
            }
            continue;
        };
        if old_decl.multi && !new_decl.multi {
            let several = accounts.iter().filter(|a| a.value(attribute).len() > 1).count();
            if several > 0 {
                problems.push(SchemaChangeProblem::MultiValuesPresent {
                    system: name.to_owned(),
                    attribute: attribute.clone().into(),
                    accounts: several,
                });
            }
        }
        let mut failed = 0;
        for a in &mut accounts {
            let value = a.value(attribute).clone();
            match value.convert(new_decl.value_type, new_decl.multi, new_decl.case_exact) {
                Ok(converted) => a.set(attribute, converted),
                Err(_) if value.len() > 1 && !new_decl.multi => {}
                Err(_) => {
                    failed += 1;
                    a.set(attribute, Value::Empty);
                }
            }
            if !new_decl.multi {
                a.pushed.remove(attribute.as_str());
            }
        }
        if failed > 0 && old_decl.value_type != new_decl.value_type {
            problems.push(SchemaChangeProblem::IncompatibleValues {
                system: name.to_owned(),
                attribute: attribute.clone().into(),
                accounts: failed,
            });
            dropped += failed;
        }
    }
    // A changed case rule of the same key attribute re-keys every account under the new
    // rule, from the key attribute's stored value (which keeps its case), unless two
    // keys become one: then it is refused, forced or not (no account may be lost).
    let case_change = old.schema.account_id == new.schema.account_id && old.key_case_exact() != new.key_case_exact();
    if case_change {
        problems.push(SchemaChangeProblem::KeyCaseChange {
            system: name.to_owned(),
            attribute: new.schema.account_id.to_string(),
        });
        let exact = new.key_case_exact();
        let mut by_key: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for a in &accounts {
            let key = key_text(&a.value(&new.schema.account_id).to_json(), exact).unwrap_or_else(|| a.key.clone());
            by_key.entry(key).or_default().push(&a.key);
        }
        let mut colliding: Vec<String> = by_key
            .values()
            .filter(|keys| keys.len() > 1)
            .flatten()
            .map(|k| (*k).to_owned())
            .collect();
        if !colliding.is_empty() {
            colliding.sort();
            colliding.truncate(10);
            problems.push(SchemaChangeProblem::KeyCaseCollision {
                system: name.to_owned(),
                keys: colliding,
            });
        }
    }
    // Re-key by the new key attribute where it gives a unique value.
    let mut removed_keys = Vec::new();
    if old.schema.account_id != new.schema.account_id || case_change {
        let exact = new.key_case_exact();
        let new_keys: Vec<Option<String>> = accounts
            .iter()
            .map(|a| key_text(&a.value(&new.schema.account_id).to_json(), exact))
            .collect();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for k in new_keys.iter().flatten() {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        let unique: Vec<Option<String>> = new_keys
            .iter()
            .map(|k| k.clone().filter(|k| counts.get(k.as_str()) == Some(&1)))
            .collect();
        for (account, key) in accounts.iter_mut().zip(unique) {
            if let Some(key) = key {
                if key != account.key {
                    removed_keys.push(std::mem::replace(&mut account.key, key));
                }
            }
        }
    }
    (accounts, removed_keys, dropped)
}
