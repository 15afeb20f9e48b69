//! Attribute values (SPEC 1): typed scalars, single and multi-valued values, the one
//! "empty" value, and comparison that honours `case_exact`.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::text::Text;

/// The declared type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// Text, compared exactly unless the attribute says `"case_exact": false`.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 date and time, stored in UTC.
    Datetime,
    /// The raw value of another identity's attribute (e.g. a manager's employee number).
    Reference,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::String => "string",
            ValueType::Integer => "integer",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Datetime => "datetime",
            ValueType::Reference => "reference",
        })
    }
}

/// A date written exactly `YYYY-MM-DD`, month and day zero-padded (SPEC 1):
/// `2026-1-5` is not one.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

/// An RFC 3339 date and time whose instant lies in the years 0000-9999 once in UTC
/// (SPEC 1): the form values are written back in, so what is stored can be read again.
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    let utc = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (0..=9999).contains(&utc.year()).then_some(utc)
}

/// The match keys of a set of scalars, for membership tests in constant time.
pub(crate) struct Keys {
    keys: std::collections::HashSet<String>,
    case_exact: bool,
}

impl Keys {
    /// The keys of `items` under the case rule.
    pub(crate) fn of(items: &[Scalar], case_exact: bool) -> Keys {
        Keys {
            keys: items.iter().map(|s| s.match_key(case_exact)).collect(),
            case_exact,
        }
    }

    /// Whether `item` is among them.
    pub(crate) fn holds(&self, item: &Scalar) -> bool {
        self.keys.contains(&item.match_key(self.case_exact))
    }

    /// Whether every one of `items` is among them.
    pub(crate) fn holds_all(&self, items: &[Scalar]) -> bool {
        items.iter().all(|s| self.holds(s))
    }
}

/// One typed value. Strings and references share the `Text` variant: the attribute's
/// declared type says which it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    /// A string or a reference.
    Text(Text),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
    /// A date.
    Date(NaiveDate),
    /// A date and time in UTC.
    Datetime(DateTime<Utc>),
}

impl Scalar {
    /// Parses `text` as a value of type `ty` (the form a CSV cell or a JSON string has).
    pub fn parse(text: &str, ty: ValueType) -> Option<Scalar> {
        match ty {
            ValueType::String | ValueType::Reference => Some(Scalar::Text(text.into())),
            ValueType::Integer => text.trim().parse().ok().map(Scalar::Integer),
            ValueType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Some(Scalar::Boolean(true)),
                "false" => Some(Scalar::Boolean(false)),
                _ => None,
            },
            ValueType::Date => parse_date(text.trim()).map(Scalar::Date),
            ValueType::Datetime => parse_datetime(text.trim()).map(Scalar::Datetime),
        }
    }

    /// Parses one JSON element as type `ty`. Strings parse by `parse`; JSON numbers are
    /// accepted for integers, JSON booleans for booleans. Anything else is `None`.
    pub fn from_json(json: &serde_json::Value, ty: ValueType) -> Option<Scalar> {
        match json {
            serde_json::Value::String(s) => Scalar::parse(s, ty),
            serde_json::Value::Number(n) if ty == ValueType::Integer => n.as_i64().map(Scalar::Integer),
            serde_json::Value::Bool(b) if ty == ValueType::Boolean => Some(Scalar::Boolean(*b)),
            _ => None,
        }
    }

    /// The plain JSON form: a string, a number or a boolean.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Text(s) => serde_json::Value::String(s.to_string()),
            Scalar::Integer(i) => serde_json::Value::from(*i),
            Scalar::Boolean(b) => serde_json::Value::Bool(*b),
            Scalar::Date(_) | Scalar::Datetime(_) => serde_json::Value::String(self.to_string()),
        }
    }

    /// Converts this value to type `ty` through its text form (a date flowing into a
    /// string attribute, a string into a reference). `None` if it does not parse.
    pub fn convert(&self, ty: ValueType) -> Option<Scalar> {
        match (self, ty) {
            (Scalar::Text(_), ValueType::String | ValueType::Reference)
            | (Scalar::Integer(_), ValueType::Integer)
            | (Scalar::Boolean(_), ValueType::Boolean)
            | (Scalar::Date(_), ValueType::Date)
            | (Scalar::Datetime(_), ValueType::Datetime) => Some(self.clone()),
            _ => Scalar::parse(&self.to_string(), ty),
        }
    }

    /// Whether two scalars are the same value; `case_exact: false` ignores case of text.
    pub fn same_as(&self, other: &Scalar, case_exact: bool) -> bool {
        match (self, other) {
            (Scalar::Text(a), Scalar::Text(b)) if !case_exact => a == b || a.to_lowercase() == b.to_lowercase(),
            _ => self == other,
        }
    }

    /// Whether this scalar is a value of type `ty` (strings and references share
    /// [`Scalar::Text`]).
    pub fn is_of(&self, ty: ValueType) -> bool {
        matches!(
            (self, ty),
            (Scalar::Text(_), ValueType::String | ValueType::Reference)
                | (Scalar::Integer(_), ValueType::Integer)
                | (Scalar::Boolean(_), ValueType::Boolean)
                | (Scalar::Date(_), ValueType::Date)
                | (Scalar::Datetime(_), ValueType::Datetime)
        )
    }

    /// The text under which this value is matched and indexed: its display form,
    /// lower-cased when the attribute ignores case.
    pub fn match_key(&self, case_exact: bool) -> String {
        let text = self.to_string();
        if case_exact {
            text
        } else {
            text.to_lowercase()
        }
    }

    fn cmp_folded(&self, other: &Scalar, case_exact: bool) -> Ordering {
        match (self, other) {
            (Scalar::Text(a), Scalar::Text(b)) if !case_exact => {
                a.to_lowercase().cmp(&b.to_lowercase()).then_with(|| a.cmp(b))
            }
            _ => self.cmp(other),
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Integer(i) => write!(f, "{i}"),
            Scalar::Boolean(b) => write!(f, "{b}"),
            Scalar::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Scalar::Datetime(d) => f.write_str(&d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }
}

/// An attribute value. `null`, `""` and `[]` are all [`Value::Empty`]; a multi-valued
/// value is a set, kept sorted and free of duplicates so that equal sets compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Value {
    /// No value.
    #[default]
    Empty,
    /// One value of a single-valued attribute.
    Single(Scalar),
    /// The non-empty value set of a multi-valued attribute.
    Multi(Box<[Scalar]>),
}

/// Why a raw value does not fit its attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    /// Several values for a single-valued attribute.
    MultipleValues,
    /// A value that does not parse as the declared type.
    InvalidValue,
}

impl Value {
    /// Builds a multi value from scalars: sorts and removes duplicates (ignoring case
    /// when `case_exact` is false, keeping the first spelling in sort order).
    pub fn multi(mut items: Vec<Scalar>, case_exact: bool) -> Value {
        items.retain(|s| !matches!(s, Scalar::Text(t) if t.is_empty()));
        if !case_exact && items.iter().all(|s| matches!(s, Scalar::Text(_))) {
            // The order of `cmp_folded`, with each folded key made once, not per
            // comparison (a directory group holds 100k members).
            items.sort_by_cached_key(|s| (s.to_string().to_lowercase(), s.clone()));
        } else {
            items.sort_by(|a, b| a.cmp_folded(b, case_exact));
        }
        items.dedup_by(|a, b| a.same_as(b, case_exact));
        if items.is_empty() {
            Value::Empty
        } else {
            Value::Multi(items.into_boxed_slice())
        }
    }

    /// Builds a single value; an empty string is [`Value::Empty`].
    pub fn single(item: Scalar) -> Value {
        match &item {
            Scalar::Text(t) if t.is_empty() => Value::Empty,
            _ => Value::Single(item),
        }
    }

    /// Parses the text of one cell (as a JSON string would be) for an attribute of
    /// type `ty`, single or `multi`: `""` is empty.
    pub fn from_text(text: &str, ty: ValueType, multi: bool, case_exact: bool) -> Result<Value, ValueProblem> {
        if text.is_empty() {
            return Ok(Value::Empty);
        }
        let one = Scalar::parse(text, ty).ok_or(ValueProblem::InvalidValue)?;
        Ok(if multi {
            Value::multi(vec![one], case_exact)
        } else {
            Value::single(one)
        })
    }

    /// Parses a JSON value for an attribute of type `ty`, single or `multi`.
    pub fn from_json(
        json: &serde_json::Value,
        ty: ValueType,
        multi: bool,
        case_exact: bool,
    ) -> Result<Value, ValueProblem> {
        let parse_one = |j: &serde_json::Value| -> Result<Option<Scalar>, ValueProblem> {
            match j {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(s) if s.is_empty() => Ok(None),
                other => Scalar::from_json(other, ty).map(Some).ok_or(ValueProblem::InvalidValue),
            }
        };
        match json {
            serde_json::Value::Array(items) => {
                let mut parsed = Vec::with_capacity(items.len());
                for item in items {
                    if item.is_array() || item.is_object() {
                        return Err(ValueProblem::InvalidValue);
                    }
                    if let Some(s) = parse_one(item)? {
                        parsed.push(s);
                    }
                }
                if multi {
                    Ok(Value::multi(parsed, case_exact))
                } else {
                    match parsed.len() {
                        0 => Ok(Value::Empty),
                        1 => Ok(parsed.pop().map_or(Value::Empty, Value::single)),
                        _ => Err(ValueProblem::MultipleValues),
                    }
                }
            }
            serde_json::Value::Object(_) => Err(ValueProblem::InvalidValue),
            other => {
                let one = parse_one(other)?;
                Ok(match (one, multi) {
                    (None, _) => Value::Empty,
                    (Some(s), true) => Value::multi(vec![s], case_exact),
                    (Some(s), false) => Value::single(s),
                })
            }
        }
    }

    /// The plain JSON form: `null`, a scalar, or an array.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Empty => serde_json::Value::Null,
            Value::Single(s) => s.to_json(),
            Value::Multi(items) => serde_json::Value::Array(items.iter().map(Scalar::to_json).collect()),
        }
    }

    /// Whether this is the empty value.
    pub fn is_empty(&self) -> bool {
        matches!(self, Value::Empty)
    }

    /// The scalars of this value (none, one, or the set).
    pub fn scalars(&self) -> &[Scalar] {
        match self {
            Value::Empty => &[],
            Value::Single(s) => std::slice::from_ref(s),
            Value::Multi(items) => items,
        }
    }

    /// Number of scalars held (0 for empty).
    pub fn len(&self) -> usize {
        self.scalars().len()
    }

    /// Whether two values are the same (empty == empty; sets compare as sets;
    /// `case_exact: false` ignores case).
    pub fn same_as(&self, other: &Value, case_exact: bool) -> bool {
        match (self, other) {
            (Value::Multi(a), Value::Multi(b)) => {
                // Sets compare as sets (SPEC 1): a stored set may be ordered under an
                // earlier case rule, so order is not trusted, only membership.
                (case_exact && a == b) || (Keys::of(a, case_exact).holds_all(b) && Keys::of(b, case_exact).holds_all(a))
            }
            _ if case_exact => self == other,
            _ => {
                let (a, b) = (self.scalars(), other.scalars());
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y, false))
            }
        }
    }

    /// Whether `item` is one of this value's scalars (a linear search: for many items,
    /// use [`Value::missing_from`]).
    pub fn contains(&self, item: &Scalar, case_exact: bool) -> bool {
        self.scalars().iter().any(|s| s.same_as(item, case_exact))
    }

    /// This value's scalars that `other` does not hold, in this value's order, under
    /// the case rule: linear in both sizes (a directory group holds 100k members).
    pub fn missing_from(&self, other: &Value, case_exact: bool) -> Vec<Scalar> {
        let held = Keys::of(other.scalars(), case_exact);
        self.scalars().iter().filter(|s| !held.holds(s)).cloned().collect()
    }

    /// [`Value::convert`] by value: a single value that already has type `ty` is
    /// returned as it is, without copying; one that does not convert is given back.
    pub(crate) fn into_type(self, ty: ValueType, multi: bool, case_exact: bool) -> Result<Value, Value> {
        match &self {
            Value::Empty if !multi => Ok(self),
            Value::Single(s) if !multi && s.is_of(ty) => Ok(self),
            _ => self.convert(ty, multi, case_exact).map_err(|_| self),
        }
    }

    /// Converts this value to an attribute of type `ty` and arity `multi`. A set with
    /// one element becomes that element; a set of several cannot become single.
    pub fn convert(&self, ty: ValueType, multi: bool, case_exact: bool) -> Result<Value, ValueProblem> {
        // The common case, a single value already of its type, without building a list:
        // an outbound plan converts every value it pushes.
        if !multi {
            match self {
                Value::Empty => return Ok(Value::Empty),
                Value::Single(s) if s.is_of(ty) => return Ok(Value::single(s.clone())),
                _ => {}
            }
        }
        self.convert_listed(ty, multi, case_exact)
    }

    /// [`Value::convert`] without its shortcut: each scalar converted into a list first.
    fn convert_listed(&self, ty: ValueType, multi: bool, case_exact: bool) -> Result<Value, ValueProblem> {
        let converted = self
            .scalars()
            .iter()
            .map(|s| s.convert(ty).ok_or(ValueProblem::InvalidValue))
            .collect::<Result<Vec<_>, _>>()?;
        if multi {
            Ok(Value::multi(converted, case_exact))
        } else {
            let mut converted = converted;
            match converted.len() {
                0 => Ok(Value::Empty),
                1 => Ok(converted.pop().map_or(Value::Empty, Value::single)),
                _ => Err(ValueProblem::MultipleValues),
            }
        }
    }
}

impl Value {
    /// The text of a single string or reference value (`None` for anything else).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Single(Scalar::Text(t)) => Some(t.as_str()),
            _ => None,
        }
    }

    /// The texts of a value's strings and references, in order (one for a single value,
    /// each for a multi value; non-text scalars are left out).
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.scalars().iter().filter_map(|s| match s {
            Scalar::Text(t) => Some(t.as_str()),
            _ => None,
        })
    }
}

/// A single text value; the empty string is [`Value::Empty`].
impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::single(Scalar::Text(text.into()))
    }
}

/// A single text value; the empty string is [`Value::Empty`].
impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::single(Scalar::Text(text.into()))
    }
}

/// A single integer value.
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        Value::Single(Scalar::Integer(n))
    }
}

/// A single boolean value.
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Single(Scalar::Boolean(b))
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Empty => f.write_str("(empty)"),
            Value::Single(s) => write!(f, "`{s}`"),
            Value::Multi(items) => {
                f.write_str("[")?;
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{s}`")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn any_scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            prop_oneof!["", "[a-cA-C]{1,3}", "-?[0-9]{1,3}", "true|false", "2026-0[1-9]-1[0-9]"]
                .prop_map(|t| Scalar::Text(Text::from(t.as_str()))),
            any::<i64>().prop_map(Scalar::Integer),
            any::<bool>().prop_map(Scalar::Boolean),
            (0i32..800_000).prop_map(|d| Scalar::Date(NaiveDate::from_num_days_from_ce_opt(d).unwrap_or_default())),
        ]
    }

    fn any_type() -> impl Strategy<Value = ValueType> {
        prop_oneof![
            Just(ValueType::String),
            Just(ValueType::Integer),
            Just(ValueType::Boolean),
            Just(ValueType::Date),
            Just(ValueType::Datetime),
            Just(ValueType::Reference),
        ]
    }

    proptest! {
        // Cheap cases, many of them: the empty text of one type in one mode is rare.
        #![proptest_config(ProptestConfig::with_cases(4096))]
        /// The shortcut of `convert` gives what converting through a list gives.
        #[test]
        fn convert_is_convert_through_a_list(
            value in prop_oneof![
                Just(Value::Empty),
                any_scalar().prop_map(Value::Single),
                proptest::collection::vec(any_scalar(), 1..4).prop_map(|v| Value::Multi(v.into_boxed_slice())),
            ],
            ty in any_type(),
            multi in any::<bool>(),
            case_exact in any::<bool>(),
        ) {
            prop_assert_eq!(value.convert(ty, multi, case_exact), value.convert_listed(ty, multi, case_exact));
        }
    }

    #[test]
    fn null_empty_string_and_empty_list_are_one_empty_value() {
        for j in [json!(null), json!(""), json!([]), json!([null, ""])] {
            assert_eq!(Value::from_json(&j, ValueType::String, false, true), Ok(Value::Empty));
            assert_eq!(Value::from_json(&j, ValueType::String, true, true), Ok(Value::Empty));
        }
    }

    #[test]
    fn multi_values_are_sets() {
        let a = Value::from_json(&json!(["b", "a", "b"]), ValueType::String, true, true).unwrap();
        let b = Value::from_json(&json!(["a", "b"]), ValueType::String, true, true).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
    }

    #[test]
    fn one_element_list_is_that_value_and_two_are_refused() {
        assert_eq!(
            Value::from_json(&json!(["x"]), ValueType::String, false, true),
            Ok(Value::Single(Scalar::Text("x".into())))
        );
        assert_eq!(
            Value::from_json(&json!(["x", "y"]), ValueType::String, false, true),
            Err(ValueProblem::MultipleValues)
        );
    }

    #[test]
    fn types_parse_or_are_invalid() {
        assert!(Value::from_json(&json!("2020-01-15"), ValueType::Date, false, true).is_ok());
        assert_eq!(
            Value::from_json(&json!("15/01/2020"), ValueType::Date, false, true),
            Err(ValueProblem::InvalidValue)
        );
        assert_eq!(
            Value::from_json(&json!(12), ValueType::Integer, false, true),
            Ok(Value::Single(Scalar::Integer(12)))
        );
        assert_eq!(
            Value::from_json(&json!("yes"), ValueType::Boolean, false, true),
            Err(ValueProblem::InvalidValue)
        );
        assert_eq!(
            Value::from_json(&json!(12), ValueType::String, false, true),
            Err(ValueProblem::InvalidValue)
        );
        assert!(Value::from_json(&json!("2026-01-01T10:00:00+02:00"), ValueType::Datetime, false, true).is_ok());
        assert!(Value::from_json(&json!({"a": 1}), ValueType::String, false, true).is_err());
    }

    #[test]
    fn case_insensitive_comparison_and_dedup() {
        let a = Value::single(Scalar::Text("Sales".into()));
        let b = Value::single(Scalar::Text("SALES".into()));
        assert!(a.same_as(&b, false));
        assert!(!a.same_as(&b, true));
        let set = Value::from_json(&json!(["G1", "g1", "G2"]), ValueType::String, true, false).unwrap();
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn text_parses_as_the_same_json_string() {
        let types = [
            ValueType::String,
            ValueType::Integer,
            ValueType::Boolean,
            ValueType::Date,
            ValueType::Datetime,
        ];
        for text in ["", "x", " 12 ", "true", "2020-01-15", "2026-01-01T10:00:00+02:00", "Ab"] {
            for ty in types {
                for (multi, exact) in [(false, true), (true, true), (true, false)] {
                    assert_eq!(
                        Value::from_text(text, ty, multi, exact),
                        Value::from_json(&json!(text), ty, multi, exact),
                        "{text:?} {ty} {multi} {exact}"
                    );
                }
            }
        }
    }

    #[test]
    fn datetime_is_normalised_to_utc() {
        let a = Value::from_json(&json!("2026-01-01T10:00:00+02:00"), ValueType::Datetime, false, true).unwrap();
        let b = Value::from_json(&json!("2026-01-01T08:00:00Z"), ValueType::Datetime, false, true).unwrap();
        assert_eq!(a, b);
    }
}
