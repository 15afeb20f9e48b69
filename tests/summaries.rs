//! A complete import settles rows whose fingerprint is their stored account's from the
//! account's summary (`Store::visit_account_summaries_by_key_and_others`) without
//! reading its values: the summaries every store lends must say what the accounts
//! say, and an import settled this way must do what comparing the values did.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly; clippy.toml allows these only inside #[test] functions"
)]

use std::collections::BTreeMap;

use attrflow::model::Echo;
use attrflow::store::Store;
use attrflow::{Account, AccountSummary, Engine, IdentityId, LinkState, MemoryStore, Snapshot, ValidatedConfig, Value};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::json;

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, day, 8, 0, 0).unwrap()
}

/// `hr` gives people; `ad` holds only single strings (so its rows are fingerprinted)
/// and receives their titles.
fn config() -> ValidatedConfig {
    ValidatedConfig::from_json(
        &json!({
            "identity": { "attributes": {
                "employeeNumber": { "type": "string" },
                "title": { "type": "string" }
            } },
            "systems": {
                "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": {
                        "id": { "type": "string" }, "title": { "type": "string" }
                    } },
                    "authoritative": true,
                    "correlation": [ [ { "account": "id", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100, "update": 100 },
                        { "account": "title", "identity": "title", "direction": "inbound", "create": 100, "update": 100 }
                    ]
                },
                "ad": {
                    "schema": { "account_id": "sam", "account_name": "sam", "attributes": {
                        "sam": { "type": "string" }, "employeeID": { "type": "string" }, "title": { "type": "string" }
                    } },
                    "correlation": [ [ { "account": "employeeID", "identity": "employeeNumber" } ] ],
                    "flows": [
                        { "account": "title", "identity": "title", "direction": "outbound" }
                    ]
                }
            }
        })
        .to_string(),
    )
    .unwrap()
}

fn ad_export(title: &str) -> Snapshot {
    serde_json::from_value(json!({
        "mode": "complete",
        "columns": ["sam", "employeeID", "title"],
        "rows": [
            { "sam": "s1", "employeeID": "E1", "title": title },
            { "sam": "s2", "employeeID": "nobody", "title": "Clerk" }
        ]
    }))
    .unwrap()
}

fn bounces(engine: &Engine) -> u32 {
    let account = engine.account("ad", "s1").unwrap().unwrap();
    account.echoes.get("title").map_or(0, |echo| echo.bounces)
}

/// Pushes the identity's title to `ad` and confirms it.
fn push_title(engine: &mut Engine, day: u32) {
    let plan = engine.outbound("ad", at(day)).unwrap();
    assert_eq!(plan.ops.len(), 1, "one title to push: {:?}", plan.ops);
    engine.confirm(&plan.ops, at(day)).unwrap();
}

/// SPEC 5.3: an import showing the pushed value kept resets the count of bounces. The
/// import that shows it kept has the row of the stored account (same fingerprint), so
/// it is settled from the summary: the summary must report the pending echo. The
/// unlinked account `s2`, unchanged too, is correlated again each time (its summary
/// says unlinked) and stays unmatched.
#[test]
fn a_row_settled_from_its_summary_still_resets_bounces_and_retries_correlation() {
    let mut engine = Engine::new(config());
    let hr: Snapshot = serde_json::from_value(json!({
        "mode": "complete", "columns": ["id", "title"], "rows": [ { "id": "E1", "title": "Engineer" } ]
    }))
    .unwrap();
    assert!(engine.import("hr", &hr, at(1)).unwrap().applied);
    assert!(engine.import("ad", &ad_export("Old"), at(2)).unwrap().applied);
    push_title(&mut engine, 3);
    // The directory shows the old title again: a bounce; pushed again.
    assert!(engine.import("ad", &ad_export("Old"), at(4)).unwrap().applied);
    assert_eq!(bounces(&engine), 1);
    push_title(&mut engine, 5);
    // The pushed value kept: the count starts over.
    let report = engine.import("ad", &ad_export("Engineer"), at(6)).unwrap();
    assert!(report.plan.changes.is_empty(), "the rows are the stored accounts");
    assert_eq!(
        report.plan.retry,
        vec!["s2".to_owned()],
        "the unlinked account is tried again"
    );
    assert_eq!(bounces(&engine), 0, "the kept value reset the count");
    assert_eq!(
        engine.account("ad", "s2").unwrap().map(|a| a.link),
        Some(LinkState::Unmatched)
    );
    // A later change is the first bounce of the next push, not the second.
    assert!(engine.import("ad", &ad_export("Other"), at(7)).unwrap().applied);
    assert!(bounces(&engine) <= 1, "counted from zero after the reset");
}

fn account_strategy() -> impl Strategy<Value = Account> {
    (
        "k[0-9]{1,2}",
        proptest::option::of(1u64..5),
        proptest::collection::btree_map("[ab]", "[xy]{0,2}", 0..3),
        proptest::collection::btree_map("[ab]", (0u32..3, any::<bool>()), 0..3),
    )
        .prop_map(|(key, link, values, echoes)| {
            let mut account = Account::new(key);
            account.link = match link {
                Some(id) => LinkState::Linked(IdentityId::from_raw(id)),
                None => LinkState::Unmatched,
            };
            for (name, value) in values {
                account
                    .attributes
                    .insert(name.as_str().into(), Value::from(value.as_str()));
            }
            account.echoes = echoes
                .into_iter()
                .map(|(name, (bounces, armed))| {
                    let mut echo = Echo::new(Value::from("pushed"));
                    echo.bounces = bounces;
                    echo.armed = armed;
                    (name.as_str().into(), echo)
                })
                .collect::<BTreeMap<_, _>>();
            account
        })
}

/// Every summary a store lends is the summary of the account it lends for that key,
/// and `others` names exactly the stored keys not asked for.
fn summaries_agree(store: &dyn Store, asked: &[String]) -> Result<(), TestCaseError> {
    let keys: Vec<&str> = asked.iter().map(String::as_str).collect();
    let mut lent = Vec::new();
    let mut others_lent = Vec::new();
    store
        .visit_account_summaries_by_key_and_others(
            "ad",
            &keys,
            &mut |index, summary| lent.push((index, summary)),
            &mut |key| others_lent.push(key.to_owned()),
        )
        .unwrap();
    let mut want = Vec::new();
    let mut others_want = Vec::new();
    store
        .visit_accounts_by_key_and_others(
            "ad",
            &keys,
            &mut |index, account| want.push((index, account.map(AccountSummary::of))),
            &mut |account| others_want.push(account.key.clone()),
        )
        .unwrap();
    lent.sort_by_key(|(index, _)| *index);
    want.sort_by_key(|(index, _)| *index);
    others_lent.sort();
    others_want.sort();
    prop_assert_eq!(lent, want);
    prop_assert_eq!(others_lent, others_want);
    Ok(())
}

proptest! {
    #[test]
    fn the_memory_store_lends_the_summaries_of_its_accounts(
        accounts in proptest::collection::vec(account_strategy(), 0..12),
        asked in proptest::collection::btree_set("k[0-9]{1,2}", 0..8),
    ) {
        let mut store = MemoryStore::new();
        store.put_accounts("ad", accounts).unwrap();
        let asked: Vec<String> = asked.into_iter().collect();
        summaries_agree(&store, &asked)?;
    }
}

#[cfg(feature = "sqlite")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn the_sqlite_store_lends_the_summaries_of_its_accounts(
        accounts in proptest::collection::vec(account_strategy(), 0..12),
        asked in proptest::collection::btree_set("k[0-9]{1,2}", 0..8),
    ) {
        let mut store = attrflow::sqlite_store::SqliteStore::open_in_memory().unwrap();
        store.put_accounts("ad", accounts).unwrap();
        let asked: Vec<String> = asked.into_iter().collect();
        summaries_agree(&store, &asked)?;
    }
}
