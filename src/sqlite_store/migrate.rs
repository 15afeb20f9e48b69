//! Migration of a database written by release 0.1 (schema version 1: a JSON document
//! per account and identity) to the binary records of version 2.
//!
//! It runs inside the transaction [`SqliteStore::open`](super::SqliteStore::open) holds
//! while it checks the schema, so a failure (a record that does not decode, a full
//! disk) leaves the file as it was. Records are moved one at a time: a database larger
//! than memory migrates too.

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection};

use crate::model::{Account, Identity};
use crate::store::StoreError;

use super::names::NameTable;
use crate::record;

use super::{sql_error, Dictionary, OpenError, META_SCHEMA_VERSION, RECORD_TABLES, SCHEMA_VERSION};

/// Rewrites a version 1 database as version 2.
pub(super) fn from_version_1(conn: &Connection) -> Result<(), OpenError> {
    let op = "migrate from schema version 1";
    conn.execute_batch(
        "ALTER TABLE attrflow_accounts RENAME TO attrflow_accounts_v1;
         ALTER TABLE attrflow_identities RENAME TO attrflow_identities_v1;
         DROP INDEX attrflow_accounts_by_identity;",
    )
    .map_err(sql_error(op))?;
    conn.execute_batch(RECORD_TABLES).map_err(sql_error(op))?;
    let mut names = NameTable::default();
    let mut blob = Vec::new();
    let json_error = |what: &str, e: serde_json::Error| StoreError::new(format!("sqlite store: {op}: {what}: {e}"));

    rewrite(
        conn,
        op,
        "SELECT system, key, identity, link_values, data FROM attrflow_accounts_v1",
        "INSERT INTO attrflow_accounts (system, key, identity, link_values, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        &mut |row| {
            let system: String = row.get(0).map_err(sql_error(op))?;
            let key: String = row.get(1).map_err(sql_error(op))?;
            let identity: Option<i64> = row.get(2).map_err(sql_error(op))?;
            let link_values: i64 = row.get(3).map_err(sql_error(op))?;
            let data: String = row.get(4).map_err(sql_error(op))?;
            let account: Account =
                serde_json::from_str(&data).map_err(|e| json_error(&format!("account `{key}` of `{system}`"), e))?;
            blob.clear();
            let fingerprint = account.values_fingerprint();
            let mut dictionary = Dictionary {
                names: &mut names,
                conn,
                op,
            };
            record::encode_account(&account, fingerprint, &mut dictionary, &mut blob)?;
            Ok(vec![
                SqlValue::Text(system),
                SqlValue::Text(key),
                identity.map_or(SqlValue::Null, SqlValue::Integer),
                SqlValue::Integer(link_values),
                SqlValue::Blob(blob.clone()),
            ])
        },
    )?;
    rewrite(
        conn,
        op,
        "SELECT id, data FROM attrflow_identities_v1",
        "INSERT INTO attrflow_identities (id, data) VALUES (?1, ?2)",
        &mut |row| {
            let id: i64 = row.get(0).map_err(sql_error(op))?;
            let data: String = row.get(1).map_err(sql_error(op))?;
            let identity: Identity =
                serde_json::from_str(&data).map_err(|e| json_error(&format!("identity {id}"), e))?;
            blob.clear();
            let mut dictionary = Dictionary {
                names: &mut names,
                conn,
                op,
            };
            record::encode_identity(&identity, &mut dictionary, &mut blob)?;
            Ok(vec![SqlValue::Integer(id), SqlValue::Blob(blob.clone())])
        },
    )?;

    conn.execute_batch("DROP TABLE attrflow_accounts_v1; DROP TABLE attrflow_identities_v1;")
        .map_err(sql_error(op))?;
    conn.execute(
        "UPDATE attrflow_meta SET value = ?1 WHERE name = ?2",
        params![SCHEMA_VERSION, META_SCHEMA_VERSION],
    )
    .map_err(sql_error(op))?;
    Ok(())
}

/// Reads every row of `select` and inserts what `convert` makes of it with `insert`,
/// one row at a time.
fn rewrite(
    conn: &Connection,
    op: &str,
    select: &str,
    insert: &str,
    convert: &mut dyn FnMut(&rusqlite::Row<'_>) -> Result<Vec<SqlValue>, StoreError>,
) -> Result<(), StoreError> {
    let mut read = conn.prepare(select).map_err(sql_error(op))?;
    let mut insert = conn.prepare(insert).map_err(sql_error(op))?;
    let mut rows = read.query([]).map_err(sql_error(op))?;
    while let Some(row) = rows.next().map_err(sql_error(op))? {
        let values = convert(row)?;
        insert
            .execute(rusqlite::params_from_iter(values))
            .map_err(sql_error(op))?;
    }
    Ok(())
}
