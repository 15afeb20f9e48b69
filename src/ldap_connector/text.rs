//! LDAP text forms: result codes in words, attribute values as row cells and back
//! (booleans, integers, GeneralizedTime), RDN escaping and DN comparison.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use ldap3::{LdapError, LdapResult, SearchEntry};

use crate::value::{Scalar, ValueType};

/// The text of an LDAP result that is not a success.
pub(super) fn result_text(op: &str, r: &LdapResult) -> String {
    let mut text = format!("{op} failed with LDAP result {} ({})", r.rc, result_name(r.rc));
    if !r.text.is_empty() {
        text.push_str(": ");
        text.push_str(&r.text);
    }
    if !r.refs.is_empty() {
        text.push_str(&format!(" (referral to {})", r.refs.join(", ")));
    }
    text
}

/// The RFC 4511 name of a result code.
pub(super) fn result_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        10 => "referral",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        _ => "other",
    }
}

/// A successful LDAP result, or the failure's words.
pub(super) fn check(op: &str, r: Result<LdapResult, LdapError>) -> Result<(), String> {
    match r {
        Ok(r) if r.rc == 0 => Ok(()),
        Ok(r) => Err(result_text(op, &r)),
        Err(e) => Err(format!("{op} failed: {e}")),
    }
}

/// An attribute's values, looked up without regard to case (LDAP names are not).
pub(super) fn attr<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a Vec<String>> {
    entry.attrs.get(name).or_else(|| {
        entry
            .attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A DN compared without regard to case or spaces after commas.
pub(super) fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|p| p.trim().to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// The later of two GeneralizedTime texts (same format, so text order is time order).
pub(super) fn newer(a: Option<String>, b: Option<&String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) if b.as_str() > a.as_str() => Some(b.clone()),
        (None, Some(b)) => Some(b.clone()),
        (a, _) => a,
    }
}

/// A group set as a cell.
pub(super) fn set_cell(groups: BTreeSet<String>) -> serde_json::Value {
    serde_json::Value::Array(groups.into_iter().map(serde_json::Value::String).collect())
}

/// LDAP values as a row cell of the declared type. A value that does not read as the
/// type is passed on as text, for prepare to reject with its reason.
pub(super) fn cell(values: &[String], value_type: ValueType, multi: bool) -> serde_json::Value {
    let one = |v: &String| -> serde_json::Value {
        match value_type {
            ValueType::Boolean => match v.as_str() {
                "TRUE" => serde_json::Value::Bool(true),
                "FALSE" => serde_json::Value::Bool(false),
                _ => serde_json::Value::String(v.clone()),
            },
            ValueType::Integer => v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| serde_json::Value::String(v.clone())),
            ValueType::Datetime => serde_json::Value::String(
                generalized_time(v)
                    .map_or_else(|| v.clone(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            ),
            ValueType::Date => {
                serde_json::Value::String(generalized_time(v).map_or_else(|| v.clone(), |t| t.date_naive().to_string()))
            }
            ValueType::String | ValueType::Reference => serde_json::Value::String(v.clone()),
        }
    };
    if multi {
        serde_json::Value::Array(values.iter().map(one).collect())
    } else {
        match values {
            [] => serde_json::Value::Null,
            [v] => one(v),
            // Several values for a single-valued attribute: prepare rejects the row.
            many => serde_json::Value::Array(many.iter().map(one).collect()),
        }
    }
}

/// GeneralizedTime (RFC 4517 3.3.13) in its usual forms: `YYYYMMDDHHMMSS[.f]Z` or with
/// a `+hhmm` / `-hhmm` offset.
pub(super) fn generalized_time(text: &str) -> Option<DateTime<Utc>> {
    let (body, offset) = if let Some(body) = text.strip_suffix('Z') {
        (body, 0i32)
    } else {
        let at = text.rfind(['+', '-'])?;
        let (body, zone) = text.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let digits = zone.get(1..)?;
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours: i32 = digits.get(..2)?.parse().ok()?;
        let minutes: i32 = digits.get(2..)?.parse().ok()?;
        (body, sign * (hours * 3600 + minutes * 60))
    };
    let (whole, fraction) = match body.split_once(['.', ',']) {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut t = NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    if let Some(f) = fraction {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos: i64 = format!("{f:0<9}").parse().ok()?;
        t = t.checked_add_signed(chrono::TimeDelta::nanoseconds(nanos))?;
    }
    let utc = t.checked_sub_signed(chrono::TimeDelta::seconds(i64::from(offset)))?;
    Some(utc.and_utc())
}

/// A value as LDAP text: booleans `TRUE` / `FALSE`, datetimes as GeneralizedTime,
/// the rest (dates as `YYYY-MM-DD`) in their text form.
pub(super) fn ldap_text(s: &Scalar) -> String {
    match s {
        Scalar::Boolean(true) => "TRUE".into(),
        Scalar::Boolean(false) => "FALSE".into(),
        Scalar::Datetime(t) => t.format("%Y%m%d%H%M%SZ").to_string(),
        other => other.to_string(),
    }
}

/// A value escaped for an RDN (RFC 4514 2.4).
pub(super) fn escape_rdn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rdn_values_are_escaped() {
        assert_eq!(escape_rdn_value("ann"), "ann");
        assert_eq!(escape_rdn_value("Lee, Ann"), "Lee\\, Ann");
        assert_eq!(escape_rdn_value("#1 a+b "), "\\#1 a\\+b\\ ");
        assert_eq!(escape_rdn_value(" x=y;"), "\\ x\\=y\\;");
    }

    #[test]
    fn generalized_time_reads_its_forms() {
        let t = |s: &str| generalized_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("20261203170000Z").as_deref(), Some("2026-12-03T17:00:00+00:00"));
        assert_eq!(t("20261203170000.5Z").as_deref(), Some("2026-12-03T17:00:00.500+00:00"));
        assert_eq!(t("20261203170000+0130").as_deref(), Some("2026-12-03T15:30:00+00:00"));
        assert_eq!(t("20261203170000-0100").as_deref(), Some("2026-12-03T18:00:00+00:00"));
        for bad in [
            "",
            "2026",
            "20261303170000Z",
            "20261203170000+1",
            "20261203170000.Z",
            "x0261203170000Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn cells_follow_the_schema_type() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(cell(&v(&["TRUE"]), ValueType::Boolean, false), serde_json::json!(true));
        assert_eq!(cell(&v(&["yes"]), ValueType::Boolean, false), serde_json::json!("yes"));
        assert_eq!(cell(&v(&["42"]), ValueType::Integer, false), serde_json::json!(42));
        assert_eq!(
            cell(&v(&["20261203170000Z"]), ValueType::Datetime, false),
            serde_json::json!("2026-12-03T17:00:00Z")
        );
        assert_eq!(cell(&v(&[]), ValueType::String, false), serde_json::Value::Null);
        assert_eq!(
            cell(&v(&["b", "a"]), ValueType::String, true),
            serde_json::json!(["b", "a"])
        );
        assert_eq!(ldap_text(&Scalar::Boolean(false)), "FALSE");
        let at = generalized_time("20261203170000Z").unwrap_or_default();
        assert_eq!(ldap_text(&Scalar::Datetime(at)), "20261203170000Z");
    }

    #[test]
    fn result_codes_are_named() {
        let r = LdapResult {
            rc: 68,
            matched: String::new(),
            text: "already there".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(
            result_text("add of `uid=a`", &r),
            "add of `uid=a` failed with LDAP result 68 (entryAlreadyExists): already there"
        );
    }
}
