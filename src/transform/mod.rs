//! Transforms (SPEC 8, 7.1): a small, pure expression language over attribute values.
//!
//! A transform computes a [`Value`] from the attributes of one object (read through an
//! [`AttributeSource`]) and from `now`, which the host passes in. It never reads a clock,
//! never performs I/O and never panics: every problem is a typed error, a
//! [`TransformError`] (with the path of the offending JSON node) when the JSON does not
//! spell a transform, an [`EvalError`] when evaluation meets a value it cannot handle.
//!
//! # JSON spelling
//!
//! A JSON string, integer, boolean, `null`, or array of those is a **literal**. Strings are
//! text, integers are integers, booleans are booleans; `null`, `""` and `[]` are the empty
//! value; an array is a multi value (a set: sorted, without duplicates or empty strings).
//! A text literal that looks like a date stays text, but compares as a date against a
//! date (see *Comparisons*). Any other JSON value is a **function**: an object with exactly
//! one key, the function's name, whose value holds the arguments.
//!
//! | JSON | Result |
//! |------|--------|
//! | `"text"`, `12`, `true`, `null`, `["a", "b"]` | the literal value |
//! | `{"attr": "name"}` | the attribute's value |
//! | `{"lower": X}`, `{"upper": X}` | X in lower / upper case |
//! | `{"trim": X}` | X without leading and trailing white space |
//! | `{"concat": [X, ...]}` | the text forms of the arguments, joined (empty counts as `""`) |
//! | `{"substring": [X, start, length]}` | `length` characters of X from character `start` (0-based); `length` may be left out (to the end); both are literal non-negative integers; out of range clamps |
//! | `{"replace": [X, "from", "to"]}` | X with every occurrence of the literal `from` (non-empty) replaced by the literal `to` |
//! | `{"lookup": {"value": X, "table": {"k": V, ...}, "default": Y}}` | the table's value for X's text form, else Y (`default` is optional: empty); table values are literals, `default` any transform |
//! | `{"if": [COND, THEN, ELSE]}` | THEN if COND is true, else ELSE (only the chosen branch is evaluated) |
//! | `{"eq": [X, Y]}`, `{"ne": [X, Y]}` | whether X and Y are (not) the same value |
//! | `{"in": [X, [literal, ...]]}` | whether (any value of) X is one of the literal list |
//! | `{"lt": [X, Y]}`, `{"gt": [X, Y]}` | whether X is before / after Y; false if either is empty |
//! | `{"and": [C, ...]}`, `{"or": [C, ...]}` | all / any of the conditions (evaluated left to right, stopping early) |
//! | `{"not": C}` | the negated condition |
//! | `{"is_empty": X}` | whether X is empty |
//! | `{"now": {}}` | `now`, a datetime |
//! | `{"today": {}}` | the (UTC) date of `now` |
//! | `{"add_days": [X, N]}` | the date or datetime X plus N days (N an integer, possibly negative, or any transform yielding one) |
//! | `{"days_between": [FROM, TO]}` | the whole days from FROM to TO, an integer (negative if TO is earlier) |
//! | `{"first": X}` | the smallest value of X in set order (empty for empty) |
//! | `{"join": [X, "sep"]}` | the text forms of X's values in set order, joined by the literal `sep` |
//! | `{"split": [X, "sep"]}` | X split at the literal `sep` (non-empty), a multi value |
//!
//! `{"now": {}}` and `{"today": {}}` also accept `null` or `[]` as their (absent) argument.
//! An unknown function name, a wrong number or shape of arguments, or an expression where
//! a literal is required is a [`TransformError`] whose [`path`](TransformError::path)
//! names the place, e.g. `concat[1].lower` for the argument of the `lower` that is the
//! second argument of the top-level `concat` (the empty path is the top level).
//!
//! # Evaluation
//!
//! - **Empty in, empty out.** `lower`, `upper`, `trim`, `substring`, `replace`, `add_days`,
//!   `first`, `join` and `split` of the empty value are empty; so is `add_days` by an empty
//!   number and `days_between` with an empty end. A text result of `""` is the empty value.
//! - **Multi values, per element.** The text functions `lower`, `upper`, `trim`,
//!   `substring`, `replace` and `split`, as well as `add_days` and `lookup`, apply to each
//!   value of a multi value and return the set of results. `concat` with a multi-valued
//!   argument returns one text per combination (`{"concat": ["g-", ["a", "b"]]}` is
//!   `["g-a", "g-b"]`), at most 10 000 of them.
//! - **Types.** Text functions need text (`{"lower": 12}` is a
//!   [`WrongType`](EvalError::WrongType) error); `concat` and `join` accept any value and use
//!   its text form (dates as `YYYY-MM-DD`, datetimes as RFC 3339). Date functions accept
//!   dates, datetimes and text that parses as either.
//! - **Conditions** are transforms that yield a boolean. The empty value counts as false;
//!   any other non-boolean is a [`WrongType`](EvalError::WrongType) error.
//! - **Comparisons.** Text compares with text exactly (case matters; `lt`/`gt` in
//!   character-code order). A text compared with a date, datetime, integer or boolean is
//!   first parsed as that type (`{"eq": [12, "12"]}` is true). A date compared with a
//!   datetime compares with the datetime's UTC date. `eq` of two multi values compares
//!   them as sets; a single value equals a multi value holding just that value; the empty
//!   value equals only the empty value. Values that cannot be compared are unequal for
//!   `eq`/`ne`, and a [`WrongType`](EvalError::WrongType) error for `lt`/`gt`, which also
//!   refuse several values. `in` is false for an empty X (use `is_empty` to test for it).
//! - **Dates.** `add_days` keeps the kind of its input (a text that parses as a date
//!   becomes a date). `days_between` of two datetimes counts whole 24-hour days, rounded
//!   towards zero; otherwise it counts calendar days between the (UTC) dates.
//! - **Budget.** One evaluation makes at most [`MAX_OUTPUT_BYTES`] of text, every
//!   intermediate result counted before it is made; past it the evaluation fails with
//!   [`TooLarge`](EvalError::TooLarge). Configuration validation works out each
//!   transform's worst case from its expression (1 KiB per single value, 1,000 values of
//!   256 bytes per multi value) and refuses one past the budget (`transform_too_large`).
//!   Evaluation steps need no budget of their own: there are no loops, each node is
//!   evaluated at most once (a `lookup`'s default too), and `concat` makes at most
//!   10 000 combinations.
//! - **Attributes.** Reading an attribute the source does not know is an
//!   [`UnknownAttribute`](EvalError::UnknownAttribute) error (an attribute that is known
//!   but empty yields the empty value). [`Transform::attributes`] lists every attribute a
//!   transform may read, so a configuration can be checked before anything is evaluated.
//!
//! # Example
//!
//! The lifecycle state of an identity from its hire and termination dates:
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use attrflow::transform::Transform;
//! use attrflow::{Scalar, Value};
//! use chrono::{DateTime, NaiveDate, Utc};
//! use serde_json::json;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let lifecycle = Transform::from_json(&json!({"if": [
//!         {"and": [
//!             {"not": {"is_empty": {"attr": "terminationDate"}}},
//!             {"lt": [{"attr": "terminationDate"}, {"today": {}}]}
//!         ]},
//!         "inactive",
//!         {"if": [{"gt": [{"attr": "hireDate"}, {"today": {}}]}, "prehire", "active"]}
//!     ]}))?;
//!     assert!(lifecycle.uses_now());
//!
//!     let date = |s: &str| -> Result<Value, chrono::ParseError> {
//!         Ok(Value::single(Scalar::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d")?)))
//!     };
//!     let person = BTreeMap::from([
//!         ("hireDate".to_owned(), date("2024-03-01")?),
//!         ("terminationDate".to_owned(), date("2024-06-30")?),
//!     ]);
//!     let state = |now: &str| -> Result<serde_json::Value, Box<dyn std::error::Error>> {
//!         Ok(lifecycle.eval(&person, now.parse::<DateTime<Utc>>()?)?.to_json())
//!     };
//!     assert_eq!(state("2024-01-15T09:00:00Z")?, json!("prehire"));
//!     assert_eq!(state("2024-03-01T09:00:00Z")?, json!("active"));
//!     assert_eq!(state("2024-06-30T23:59:59Z")?, json!("active"));
//!     assert_eq!(state("2024-07-01T00:00:00Z")?, json!("inactive"));
//!     Ok(())
//! }
//! ```

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::Value as Json;

use crate::value::{Scalar, Value, ValueType};

mod bound;
pub(crate) use bound::InputSize;

/// How deeply functions may nest: deeper JSON is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// How many texts `concat` may produce from multi-valued arguments.
const MAX_COMBINATIONS: usize = 10_000;

/// How many bytes of text one evaluation may produce in all (every intermediate
/// result counted): a 2 KB configuration of nested `replace`s could otherwise ask for
/// gigabytes. Far above any attribute value an identity system holds.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// How many values an error message shows of a multi value.
const SHOWN_VALUES: usize = 5;

/// A parsed transform: a pure expression over attribute values and `now`.
///
/// Build one with [`Transform::from_json`] (or serde); write it back with
/// [`Transform::to_json`]. The module documentation lists the JSON spelling and the
/// evaluation rules; each variant below shows its function at work.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Transform {
    /// A literal: a JSON string, integer, boolean, `null` or array of those.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// let t = Transform::from_json(&json!(["b", "a", "b", ""]))?;
    /// assert_eq!(t.eval(&source, now)?.to_json(), json!(["a", "b"]));
    /// assert_eq!(Transform::from_json(&json!(""))?.eval(&source, now)?, Value::Empty);
    /// # Ok(())
    /// # }
    /// ```
    Literal(Value),
    /// `{"attr": "name"}`: the value of an attribute.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::{EvalError, Transform}, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("givenName".to_owned(), Value::single(Scalar::Text("Ann".into())))]);
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// let t = Transform::from_json(&json!({"attr": "givenName"}))?;
    /// assert_eq!(t.eval(&source, now)?.to_json(), json!("Ann"));
    /// let unknown = Transform::from_json(&json!({"attr": "nickname"}))?.eval(&source, now);
    /// assert!(matches!(unknown, Err(EvalError::UnknownAttribute { .. })));
    /// # Ok(())
    /// # }
    /// ```
    Attr(String),
    /// `{"lower": X}`: text in lower case (per element of a multi value).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("mail".to_owned(), Value::single(Scalar::Text("Ann@Example.COM".into())))]);
    /// let t = Transform::from_json(&json!({"lower": {"attr": "mail"}}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("ann@example.com"));
    /// # Ok(())
    /// # }
    /// ```
    Lower(Box<Transform>),
    /// `{"upper": X}`: text in upper case (per element of a multi value).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"upper": ["de", "fr"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(["DE", "FR"]));
    /// # Ok(())
    /// # }
    /// ```
    Upper(Box<Transform>),
    /// `{"trim": X}`: text without leading and trailing white space (per element).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// assert_eq!(Transform::from_json(&json!({"trim": "  Sales "}))?.eval(&source, now)?.to_json(), json!("Sales"));
    /// assert_eq!(Transform::from_json(&json!({"trim": "   "}))?.eval(&source, now)?, Value::Empty);
    /// # Ok(())
    /// # }
    /// ```
    Trim(Box<Transform>),
    /// `{"concat": [X, ...]}`: the text forms of the arguments joined together; an empty
    /// argument counts as `""`, a multi-valued one gives one result per value.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([
    ///     ("givenName".to_owned(), Value::single(Scalar::Text("Ann".into()))),
    ///     ("sn".to_owned(), Value::single(Scalar::Text("Lee".into()))),
    /// ]);
    /// let t = Transform::from_json(&json!({"concat": [{"attr": "givenName"}, " ", {"attr": "sn"}]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("Ann Lee"));
    /// # Ok(())
    /// # }
    /// ```
    Concat(Vec<Transform>),
    /// `{"substring": [X, start, length]}`: characters (not bytes) of a text; `length` may
    /// be left out to take the rest; out-of-range positions clamp.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// let t = Transform::from_json(&json!({"substring": ["Zoë Ångström", 4, 3]}))?;
    /// assert_eq!(t.eval(&source, now)?.to_json(), json!("Ång"));
    /// let clamped = Transform::from_json(&json!({"substring": ["abc", 1, 100]}))?;
    /// assert_eq!(clamped.eval(&source, now)?.to_json(), json!("bc"));
    /// # Ok(())
    /// # }
    /// ```
    Substring {
        /// The text.
        value: Box<Transform>,
        /// The first character taken, counting from 0.
        start: usize,
        /// How many characters are taken; `None` for all the rest.
        length: Option<usize>,
    },
    /// `{"replace": [X, "from", "to"]}`: every occurrence of `from` replaced by `to`.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"replace": ["Mary Ann Lee", " ", "."]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("Mary.Ann.Lee"));
    /// # Ok(())
    /// # }
    /// ```
    Replace {
        /// The text.
        value: Box<Transform>,
        /// The text replaced (never empty when parsed from JSON).
        from: String,
        /// Its replacement.
        to: String,
    },
    /// `{"lookup": {"value": X, "table": {...}, "default": Y}}`: maps X's text form
    /// through a table; values not in it map to `default` (empty if there is none).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("country".to_owned(), Value::single(Scalar::Text("DE".into())))]);
    /// let t = Transform::from_json(&json!({"lookup": {
    ///     "value": {"attr": "country"},
    ///     "table": {"DE": "Germany", "FR": "France"},
    ///     "default": "Elsewhere"
    /// }}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("Germany"));
    /// # Ok(())
    /// # }
    /// ```
    Lookup {
        /// The value looked up.
        value: Box<Transform>,
        /// Text form of a value → its result.
        table: BTreeMap<String, Value>,
        /// The result for values not in the table; `None` gives the empty value.
        default: Option<Box<Transform>>,
    },
    /// `{"if": [COND, THEN, ELSE]}`: THEN when the condition is true, else ELSE.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("contractor".to_owned(), Value::single(Scalar::Boolean(true)))]);
    /// let t = Transform::from_json(&json!({"if": [{"attr": "contractor"}, "external", "internal"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("external"));
    /// # Ok(())
    /// # }
    /// ```
    If {
        /// The condition; empty counts as false.
        condition: Box<Transform>,
        /// The result when the condition holds.
        then: Box<Transform>,
        /// The result otherwise.
        otherwise: Box<Transform>,
    },
    /// `{"eq": [X, Y]}`: whether X and Y are the same value.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use chrono::NaiveDate;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hired = NaiveDate::parse_from_str("2024-03-01", "%Y-%m-%d")?;
    /// let source = BTreeMap::from([("hireDate".to_owned(), Value::single(Scalar::Date(hired)))]);
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// let t = Transform::from_json(&json!({"eq": [{"attr": "hireDate"}, "2024-03-01"]}))?;
    /// assert_eq!(t.eval(&source, now)?.to_json(), json!(true));
    /// let exact = Transform::from_json(&json!({"eq": ["Sales", "sales"]}))?;
    /// assert_eq!(exact.eval(&source, now)?.to_json(), json!(false));
    /// # Ok(())
    /// # }
    /// ```
    Eq(Box<Transform>, Box<Transform>),
    /// `{"ne": [X, Y]}`: whether X and Y differ.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("department".to_owned(), Value::Empty)]);
    /// let t = Transform::from_json(&json!({"ne": [{"attr": "department"}, null]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(false));
    /// # Ok(())
    /// # }
    /// ```
    Ne(Box<Transform>, Box<Transform>),
    /// `{"in": [X, [literal, ...]]}`: whether X (any of its values, if several) is in the
    /// literal list.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("country".to_owned(), Value::single(Scalar::Text("FR".into())))]);
    /// let t = Transform::from_json(&json!({"in": [{"attr": "country"}, ["DE", "FR", "IT"]]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    In {
        /// The value tested.
        value: Box<Transform>,
        /// The accepted values.
        list: Vec<Scalar>,
    },
    /// `{"lt": [X, Y]}`: whether X is less than (before) Y; false if either is empty.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use chrono::NaiveDate;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let left = NaiveDate::parse_from_str("2024-04-30", "%Y-%m-%d")?;
    /// let source = BTreeMap::from([("terminationDate".to_owned(), Value::single(Scalar::Date(left)))]);
    /// let t = Transform::from_json(&json!({"lt": [{"attr": "terminationDate"}, {"today": {}}]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    Lt(Box<Transform>, Box<Transform>),
    /// `{"gt": [X, Y]}`: whether X is greater than (after) Y; false if either is empty.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("level".to_owned(), Value::single(Scalar::Integer(7)))]);
    /// let t = Transform::from_json(&json!({"gt": [{"attr": "level"}, "5"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    Gt(Box<Transform>, Box<Transform>),
    /// `{"and": [C, ...]}`: whether every condition holds (stops at the first false one).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"and": [true, {"eq": [1, 1]}, false]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(false));
    /// # Ok(())
    /// # }
    /// ```
    And(Vec<Transform>),
    /// `{"or": [C, ...]}`: whether any condition holds (stops at the first true one).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"or": [false, {"eq": [1, 1]}]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    Or(Vec<Transform>),
    /// `{"not": C}`: the negated condition (so `not` of the empty value is true).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"not": {"eq": ["a", "b"]}}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    Not(Box<Transform>),
    /// `{"is_empty": X}`: whether X is the empty value.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("terminationDate".to_owned(), Value::Empty)]);
    /// let t = Transform::from_json(&json!({"is_empty": {"attr": "terminationDate"}}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(true));
    /// # Ok(())
    /// # }
    /// ```
    IsEmpty(Box<Transform>),
    /// `{"now": {}}`: the `now` passed to [`Transform::eval`], a datetime.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"now": {}}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("2024-05-01T12:00:00Z"));
    /// # Ok(())
    /// # }
    /// ```
    Now,
    /// `{"today": {}}`: the UTC date of `now`.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"today": {}}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T23:30:00-02:00".parse()?)?.to_json(), json!("2024-05-02"));
    /// # Ok(())
    /// # }
    /// ```
    Today,
    /// `{"add_days": [X, N]}`: a date or datetime moved by N days (N may be negative and
    /// may be any transform yielding an integer).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let now = "2024-05-01T12:00:00Z".parse()?;
    /// let t = Transform::from_json(&json!({"add_days": [{"today": {}}, -30]}))?;
    /// assert_eq!(t.eval(&source, now)?.to_json(), json!("2024-04-01"));
    /// let later = Transform::from_json(&json!({"add_days": [{"now": {}}, 1]}))?;
    /// assert_eq!(later.eval(&source, now)?.to_json(), json!("2024-05-02T12:00:00Z"));
    /// # Ok(())
    /// # }
    /// ```
    AddDays {
        /// The date or datetime.
        value: Box<Transform>,
        /// The number of days added.
        days: Box<Transform>,
    },
    /// `{"days_between": [FROM, TO]}`: the whole days from FROM to TO, an integer.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use chrono::NaiveDate;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hired = NaiveDate::parse_from_str("2024-03-01", "%Y-%m-%d")?;
    /// let source = BTreeMap::from([("hireDate".to_owned(), Value::single(Scalar::Date(hired)))]);
    /// let t = Transform::from_json(&json!({"days_between": [{"attr": "hireDate"}, {"today": {}}]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(61));
    /// # Ok(())
    /// # }
    /// ```
    DaysBetween {
        /// The start.
        from: Box<Transform>,
        /// The end.
        to: Box<Transform>,
    },
    /// `{"first": X}`: the smallest value of X in set order; empty for the empty value.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"first": ["sales", "hr", "it"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("hr"));
    /// # Ok(())
    /// # }
    /// ```
    First(Box<Transform>),
    /// `{"join": [X, "sep"]}`: the text forms of X's values, in set order, joined by `sep`.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"join": [["sales", "hr"], ";"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("hr;sales"));
    /// # Ok(())
    /// # }
    /// ```
    Join {
        /// The values.
        value: Box<Transform>,
        /// The separator.
        separator: String,
    },
    /// `{"split": [X, "sep"]}`: the parts of a text between occurrences of `sep`, a multi
    /// value (empty parts are dropped, duplicates merged).
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source: BTreeMap<String, Value> = BTreeMap::new();
    /// let t = Transform::from_json(&json!({"split": ["sales;hr;;sales", ";"]}))?;
    /// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!(["hr", "sales"]));
    /// # Ok(())
    /// # }
    /// ```
    Split {
        /// The text.
        value: Box<Transform>,
        /// The separator (never empty when parsed from JSON).
        separator: String,
    },
}

/// Where a transform reads attributes from.
pub trait AttributeSource {
    /// The value of attribute `name`: `None` if there is no such attribute (an
    /// [`EvalError::UnknownAttribute`]), `Some(Value::Empty)` if it is known but empty.
    fn get(&self, name: &str) -> Option<Value>;
}

impl AttributeSource for BTreeMap<String, Value> {
    fn get(&self, name: &str) -> Option<Value> {
        BTreeMap::get(self, name).cloned()
    }
}

impl<S: std::hash::BuildHasher> AttributeSource for HashMap<String, Value, S> {
    fn get(&self, name: &str) -> Option<Value> {
        HashMap::get(self, name).cloned()
    }
}

impl<T: AttributeSource + ?Sized> AttributeSource for &T {
    fn get(&self, name: &str) -> Option<Value> {
        (**self).get(name)
    }
}

/// An [`AttributeSource`] made of a closure.
///
/// ```
/// # use attrflow::transform::{FnSource, Transform};
/// # use attrflow::{Scalar, Value};
/// # use serde_json::json;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let source = FnSource(|name: &str| (name == "sn").then(|| Value::single(Scalar::Text("Lee".into()))));
/// let t = Transform::from_json(&json!({"upper": {"attr": "sn"}}))?;
/// assert_eq!(t.eval(&source, "2024-05-01T12:00:00Z".parse()?)?.to_json(), json!("LEE"));
/// # Ok(())
/// # }
/// ```
pub struct FnSource<F>(pub F);

impl<F: Fn(&str) -> Option<Value>> AttributeSource for FnSource<F> {
    fn get(&self, name: &str) -> Option<Value> {
        (self.0)(name)
    }
}

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSource").finish_non_exhaustive()
    }
}

/// JSON that does not spell a transform: an unknown function, a wrong number or shape of
/// arguments, or an expression where a literal is required.
///
/// ```
/// # use attrflow::transform::Transform;
/// # use serde_json::json;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let json = json!({"concat": ["a", {"lower": {"shout": "b"}}]});
/// let err = Transform::from_json(&json).err().ok_or("expected an error")?;
/// assert_eq!(err.path(), "concat[1].lower");
/// assert_eq!(err.message(), "unknown function `shout`");
/// assert_eq!(err.to_string(), "at `concat[1].lower`: unknown function `shout`");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_transform_error(.path, .message))]
pub struct TransformError {
    path: String,
    message: String,
}

fn render_transform_error(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_owned()
    } else {
        format!("at `{path}`: {message}")
    }
}

impl TransformError {
    fn new(path: &str, message: impl Into<String>) -> TransformError {
        TransformError {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// Where in the JSON the problem is: function names and argument positions joined
    /// by `.`, e.g. `concat[1].lower` or `lookup.table.DE`; empty for the top level.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong there.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A transform that could not be evaluated on the values it met.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The transform reads an attribute the source does not have.
    #[error("unknown attribute `{name}`")]
    UnknownAttribute {
        /// The attribute's name.
        name: String,
    },
    /// A function met a value of a type it does not accept.
    #[error("`{function}` expects {expected}, found {found}")]
    WrongType {
        /// The function's name.
        function: String,
        /// What it accepts.
        expected: String,
        /// What it got.
        found: String,
    },
    /// The evaluation would produce more text than [`MAX_OUTPUT_BYTES`]: refused
    /// before the text is made.
    #[error("`{function}` would take the transform's output past its budget of {limit} bytes")]
    TooLarge {
        /// The function's name.
        function: String,
        /// The budget.
        limit: usize,
    },
    /// A function's arguments are of the right type but cannot be used (e.g. a date
    /// moved out of the representable range).
    #[error("invalid argument to `{function}`: {message}")]
    InvalidArgument {
        /// The function's name.
        function: String,
        /// What is wrong.
        message: String,
    },
}

impl EvalError {
    /// The stable `snake_case` name: `unknown_attribute`, `wrong_type`, `too_large` or
    /// `invalid_argument`.
    pub fn kind(&self) -> &'static str {
        match self {
            EvalError::TooLarge { .. } => "too_large",
            EvalError::UnknownAttribute { .. } => "unknown_attribute",
            EvalError::WrongType { .. } => "wrong_type",
            EvalError::InvalidArgument { .. } => "invalid_argument",
        }
    }

    fn wrong_type(function: &str, expected: &str, found: String) -> EvalError {
        EvalError::WrongType {
            function: function.to_owned(),
            expected: expected.to_owned(),
            found,
        }
    }

    fn invalid(function: &str, message: String) -> EvalError {
        EvalError::InvalidArgument {
            function: function.to_owned(),
            message,
        }
    }
}

// ------------------------------------------------------------------------ parsing

fn child_path(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn index_path(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The argument list spelled for each function, for error messages.
fn usage(name: &str) -> &'static str {
    match name {
        "substring" => "[value, start, length] (length optional)",
        "replace" => "[value, \"from\", \"to\"]",
        "if" => "[condition, then, else]",
        "eq" | "ne" | "lt" | "gt" => "[left, right]",
        "in" => "[value, [literal, ...]]",
        "add_days" => "[date, days]",
        "days_between" => "[from, to]",
        "join" | "split" => "[value, \"separator\"]",
        _ => "[...]",
    }
}

/// The argument array of `name`, which must hold between `min` and `max` elements.
fn arguments<'a>(arg: &'a Json, path: &str, name: &str, min: usize, max: usize) -> Result<&'a [Json], TransformError> {
    match arg {
        Json::Array(items) if (min..=max).contains(&items.len()) => Ok(items),
        Json::Array(items) => Err(TransformError::new(
            path,
            format!(
                "`{name}` takes a list of {} arguments {}, found {}",
                if min == max {
                    min.to_string()
                } else {
                    format!("{min} or {max}")
                },
                usage(name),
                items.len()
            ),
        )),
        _ => Err(TransformError::new(
            path,
            format!("`{name}` takes a list of arguments {}", usage(name)),
        )),
    }
}

/// The non-empty argument array of a variadic function.
fn variadic<'a>(arg: &'a Json, path: &str, name: &str) -> Result<&'a [Json], TransformError> {
    match arg {
        Json::Array(items) if !items.is_empty() => Ok(items),
        _ => Err(TransformError::new(
            path,
            format!("`{name}` takes a non-empty list of arguments [x, ...]"),
        )),
    }
}

fn literal_string(
    json: &Json,
    path: &str,
    name: &str,
    what: &str,
    allow_empty: bool,
) -> Result<String, TransformError> {
    match json {
        Json::String(s) if allow_empty || !s.is_empty() => Ok(s.clone()),
        Json::String(_) => Err(TransformError::new(
            path,
            format!("the {what} of `{name}` must not be empty"),
        )),
        Json::Object(_) => Err(TransformError::new(
            path,
            format!("the {what} of `{name}` must be a literal string, not a function"),
        )),
        _ => Err(TransformError::new(
            path,
            format!("the {what} of `{name}` must be a string"),
        )),
    }
}

fn literal_count(json: &Json, path: &str, name: &str, what: &str) -> Result<usize, TransformError> {
    match json {
        Json::Number(n) if n.as_u64().is_some() => Ok(n
            .as_u64()
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))),
        Json::Object(_) => Err(TransformError::new(
            path,
            format!("the {what} of `{name}` must be a literal integer, not a function"),
        )),
        _ => Err(TransformError::new(
            path,
            format!("the {what} of `{name}` must be a non-negative integer"),
        )),
    }
}

fn literal_scalar(json: &Json, path: &str) -> Result<Option<Scalar>, TransformError> {
    match json {
        Json::Null => Ok(None),
        Json::String(s) if s.is_empty() => Ok(None),
        Json::String(s) => Ok(Some(Scalar::Text(s.clone().into()))),
        Json::Bool(b) => Ok(Some(Scalar::Boolean(*b))),
        Json::Number(n) => n.as_i64().map(|i| Some(Scalar::Integer(i))).ok_or_else(|| {
            TransformError::new(
                path,
                format!("the number `{n}` is not supported: only whole numbers that fit 64 bits are"),
            )
        }),
        Json::Array(_) | Json::Object(_) => Err(TransformError::new(
            path,
            "a literal list may hold only strings, integers, booleans and null",
        )),
    }
}

fn literal(json: &Json, path: &str) -> Result<Value, TransformError> {
    match json {
        Json::Array(items) => {
            let mut scalars = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                if let Some(s) = literal_scalar(item, &index_path(path, i))? {
                    scalars.push(s);
                }
            }
            Ok(Value::multi(scalars, true))
        }
        Json::Object(_) => Err(TransformError::new(path, "expected a literal value, found a function")),
        other => Ok(literal_scalar(other, path)?.map_or(Value::Empty, Value::single)),
    }
}

fn parse(json: &Json, path: &str, depth: usize) -> Result<Transform, TransformError> {
    if depth > MAX_DEPTH {
        return Err(TransformError::new(
            path,
            format!("the transform nests functions more than {MAX_DEPTH} deep"),
        ));
    }
    match json {
        Json::Object(map) => {
            let mut entries = map.iter();
            match (entries.next(), entries.next()) {
                (Some((name, arg)), None) => parse_function(name, arg, path, depth),
                (None, _) => Err(TransformError::new(
                    path,
                    "an empty object is not a transform: a function is an object with one key, its name",
                )),
                (Some(_), Some(_)) => Err(TransformError::new(
                    path,
                    format!(
                        "a function is an object with exactly one key, its name; found {} keys ({})",
                        map.len(),
                        map.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                )),
            }
        }
        other => literal(other, path).map(Transform::Literal),
    }
}

fn parse_function(name: &str, arg: &Json, path: &str, depth: usize) -> Result<Transform, TransformError> {
    let here = child_path(path, name);
    let depth = depth + 1;
    let one = |json: &Json| parse(json, &here, depth).map(Box::new);
    let nth = |args: &[Json], i: usize| match args.get(i) {
        Some(json) => parse(json, &index_path(&here, i), depth).map(Box::new),
        None => Err(TransformError::new(&here, format!("`{name}` lacks argument {i}"))),
    };
    let all = |args: &[Json]| {
        args.iter()
            .enumerate()
            .map(|(i, json)| parse(json, &index_path(&here, i), depth))
            .collect::<Result<Vec<_>, _>>()
    };
    let pair = |args: &[Json]| -> Result<(Box<Transform>, Box<Transform>), TransformError> {
        Ok((nth(args, 0)?, nth(args, 1)?))
    };
    Ok(match name {
        "attr" => match arg {
            Json::String(s) if !s.is_empty() => Transform::Attr(s.clone()),
            _ => {
                return Err(TransformError::new(
                    &here,
                    "`attr` takes an attribute name, a non-empty string",
                ))
            }
        },
        "lower" => Transform::Lower(one(arg)?),
        "upper" => Transform::Upper(one(arg)?),
        "trim" => Transform::Trim(one(arg)?),
        "not" => Transform::Not(one(arg)?),
        "is_empty" => Transform::IsEmpty(one(arg)?),
        "first" => Transform::First(one(arg)?),
        "concat" => Transform::Concat(all(variadic(arg, &here, name)?)?),
        "and" => Transform::And(all(variadic(arg, &here, name)?)?),
        "or" => Transform::Or(all(variadic(arg, &here, name)?)?),
        "substring" => {
            let args = arguments(arg, &here, name, 2, 3)?;
            let value = nth(args, 0)?;
            let start = match args.get(1) {
                Some(json) => literal_count(json, &index_path(&here, 1), name, "start")?,
                None => 0,
            };
            let length = match args.get(2) {
                Some(json) => Some(literal_count(json, &index_path(&here, 2), name, "length")?),
                None => None,
            };
            Transform::Substring { value, start, length }
        }
        "replace" => {
            let args = arguments(arg, &here, name, 3, 3)?;
            let text = |i: usize, what: &str, allow_empty: bool| match args.get(i) {
                Some(json) => literal_string(json, &index_path(&here, i), name, what, allow_empty),
                None => Err(TransformError::new(&here, format!("`{name}` lacks its {what}"))),
            };
            Transform::Replace {
                value: nth(args, 0)?,
                from: text(1, "text replaced", false)?,
                to: text(2, "replacement", true)?,
            }
        }
        "join" | "split" => {
            let args = arguments(arg, &here, name, 2, 2)?;
            let value = nth(args, 0)?;
            let separator = match args.get(1) {
                Some(json) => literal_string(json, &index_path(&here, 1), name, "separator", name == "join")?,
                None => String::new(),
            };
            if name == "join" {
                Transform::Join { value, separator }
            } else {
                Transform::Split { value, separator }
            }
        }
        "lookup" => parse_lookup(arg, &here, depth)?,
        "if" => {
            let args = arguments(arg, &here, name, 3, 3)?;
            Transform::If {
                condition: nth(args, 0)?,
                then: nth(args, 1)?,
                otherwise: nth(args, 2)?,
            }
        }
        "eq" | "ne" | "lt" | "gt" | "add_days" | "days_between" => {
            let (a, b) = pair(arguments(arg, &here, name, 2, 2)?)?;
            match name {
                "eq" => Transform::Eq(a, b),
                "ne" => Transform::Ne(a, b),
                "lt" => Transform::Lt(a, b),
                "gt" => Transform::Gt(a, b),
                "add_days" => Transform::AddDays { value: a, days: b },
                _ => Transform::DaysBetween { from: a, to: b },
            }
        }
        "in" => {
            let args = arguments(arg, &here, name, 2, 2)?;
            let list_path = index_path(&here, 1);
            let value = nth(args, 0)?;
            let list = match args.get(1) {
                Some(Json::Object(_)) => {
                    return Err(TransformError::new(
                        &list_path,
                        "the list of `in` must be a literal list, not a function",
                    ))
                }
                Some(json) => literal(json, &list_path)?.scalars().to_vec(),
                None => Vec::new(),
            };
            Transform::In { value, list }
        }
        "now" | "today" => match arg {
            Json::Null => no_arguments(name),
            Json::Object(m) if m.is_empty() => no_arguments(name),
            Json::Array(a) if a.is_empty() => no_arguments(name),
            _ => {
                return Err(TransformError::new(
                    &here,
                    format!("`{name}` takes no arguments: write {{\"{name}\": {{}}}}"),
                ))
            }
        },
        _ => return Err(TransformError::new(path, format!("unknown function `{name}`"))),
    })
}

fn no_arguments(name: &str) -> Transform {
    if name == "now" {
        Transform::Now
    } else {
        Transform::Today
    }
}

fn parse_lookup(arg: &Json, here: &str, depth: usize) -> Result<Transform, TransformError> {
    let Json::Object(map) = arg else {
        return Err(TransformError::new(
            here,
            "`lookup` takes an object {\"value\": x, \"table\": {...}, \"default\": y} (default optional)",
        ));
    };
    if let Some(key) = map
        .keys()
        .find(|k| !matches!(k.as_str(), "value" | "table" | "default"))
    {
        return Err(TransformError::new(
            here,
            format!("`lookup` has no field `{key}`: its fields are `value`, `table` and `default`"),
        ));
    }
    let value = match map.get("value") {
        Some(json) => Box::new(parse(json, &child_path(here, "value"), depth)?),
        None => return Err(TransformError::new(here, "`lookup` needs a `value`")),
    };
    let table_path = child_path(here, "table");
    let table = match map.get("table") {
        Some(Json::Object(entries)) => entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), literal(v, &child_path(&table_path, k))?)))
            .collect::<Result<BTreeMap<_, _>, TransformError>>()?,
        Some(_) => {
            return Err(TransformError::new(
                &table_path,
                "the `table` of `lookup` must be an object mapping texts to literal values",
            ))
        }
        None => return Err(TransformError::new(here, "`lookup` needs a `table`")),
    };
    let default = match map.get("default") {
        Some(json) => Some(Box::new(parse(json, &child_path(here, "default"), depth)?)),
        None => None,
    };
    Ok(Transform::Lookup { value, table, default })
}

// ------------------------------------------------------------------------ API

fn function(name: &str, args: Json) -> Json {
    let mut map = serde_json::Map::new();
    map.insert(name.to_owned(), args);
    Json::Object(map)
}

impl Transform {
    /// Parses the JSON spelling (see the module documentation).
    ///
    /// ```
    /// # use attrflow::transform::Transform;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let t = Transform::from_json(&json!({"lower": {"attr": "mail"}}))?;
    /// assert_eq!(t.to_json(), json!({"lower": {"attr": "mail"}}));
    /// let err = Transform::from_json(&json!({"if": [true, "a"]})).err().ok_or("expected an error")?;
    /// assert_eq!(err.path(), "if");
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_json(json: &Json) -> Result<Transform, TransformError> {
        parse(json, "", 0)
    }

    /// The JSON spelling; [`Transform::from_json`] reads it back to an equal transform.
    /// (Literal dates and datetimes, which JSON cannot spell, are written as text.)
    pub fn to_json(&self) -> Json {
        let two =
            |name: &str, a: &Transform, b: &Transform| function(name, Json::Array(vec![a.to_json(), b.to_json()]));
        let list = |name: &str, items: &[Transform]| {
            function(name, Json::Array(items.iter().map(Transform::to_json).collect()))
        };
        match self {
            Transform::Literal(v) => v.to_json(),
            Transform::Attr(name) => function("attr", Json::String(name.clone())),
            Transform::Lower(x) => function("lower", x.to_json()),
            Transform::Upper(x) => function("upper", x.to_json()),
            Transform::Trim(x) => function("trim", x.to_json()),
            Transform::Concat(items) => list("concat", items),
            Transform::Substring { value, start, length } => {
                let mut args = vec![value.to_json(), Json::from(*start)];
                if let Some(length) = length {
                    args.push(Json::from(*length));
                }
                function("substring", Json::Array(args))
            }
            Transform::Replace { value, from, to } => function(
                "replace",
                Json::Array(vec![
                    value.to_json(),
                    Json::String(from.clone()),
                    Json::String(to.clone()),
                ]),
            ),
            Transform::Lookup { value, table, default } => {
                let mut map = serde_json::Map::new();
                map.insert("value".to_owned(), value.to_json());
                map.insert(
                    "table".to_owned(),
                    Json::Object(table.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
                );
                if let Some(default) = default {
                    map.insert("default".to_owned(), default.to_json());
                }
                function("lookup", Json::Object(map))
            }
            Transform::If {
                condition,
                then,
                otherwise,
            } => function(
                "if",
                Json::Array(vec![condition.to_json(), then.to_json(), otherwise.to_json()]),
            ),
            Transform::Eq(a, b) => two("eq", a, b),
            Transform::Ne(a, b) => two("ne", a, b),
            Transform::In { value, list } => function(
                "in",
                Json::Array(vec![
                    value.to_json(),
                    Json::Array(list.iter().map(Scalar::to_json).collect()),
                ]),
            ),
            Transform::Lt(a, b) => two("lt", a, b),
            Transform::Gt(a, b) => two("gt", a, b),
            Transform::And(items) => list("and", items),
            Transform::Or(items) => list("or", items),
            Transform::Not(x) => function("not", x.to_json()),
            Transform::IsEmpty(x) => function("is_empty", x.to_json()),
            Transform::Now => function("now", Json::Object(serde_json::Map::new())),
            Transform::Today => function("today", Json::Object(serde_json::Map::new())),
            Transform::AddDays { value, days } => two("add_days", value, days),
            Transform::DaysBetween { from, to } => two("days_between", from, to),
            Transform::First(x) => function("first", x.to_json()),
            Transform::Join { value, separator } => function(
                "join",
                Json::Array(vec![value.to_json(), Json::String(separator.clone())]),
            ),
            Transform::Split { value, separator } => function(
                "split",
                Json::Array(vec![value.to_json(), Json::String(separator.clone())]),
            ),
        }
    }

    /// The transforms this one is made of, in argument order.
    fn children(&self) -> Vec<&Transform> {
        match self {
            Transform::Literal(_) | Transform::Attr(_) | Transform::Now | Transform::Today => Vec::new(),
            Transform::Lower(x)
            | Transform::Upper(x)
            | Transform::Trim(x)
            | Transform::Not(x)
            | Transform::IsEmpty(x)
            | Transform::First(x)
            | Transform::Substring { value: x, .. }
            | Transform::Replace { value: x, .. }
            | Transform::In { value: x, .. }
            | Transform::Join { value: x, .. }
            | Transform::Split { value: x, .. } => vec![x],
            Transform::Concat(items) | Transform::And(items) | Transform::Or(items) => items.iter().collect(),
            Transform::Lookup { value, default, .. } => {
                let mut out = vec![value.as_ref()];
                out.extend(default.as_deref());
                out
            }
            Transform::If {
                condition,
                then,
                otherwise,
            } => vec![condition, then, otherwise],
            Transform::Eq(a, b)
            | Transform::Ne(a, b)
            | Transform::Lt(a, b)
            | Transform::Gt(a, b)
            | Transform::AddDays { value: a, days: b }
            | Transform::DaysBetween { from: a, to: b } => vec![a, b],
        }
    }

    /// Every attribute the transform may read, in any branch.
    ///
    /// ```
    /// # use attrflow::transform::Transform;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let t = Transform::from_json(&json!({"if": [{"is_empty": {"attr": "nickname"}}, {"attr": "givenName"}, {"attr": "nickname"}]}))?;
    /// assert_eq!(t.attributes().into_iter().collect::<Vec<_>>(), ["givenName", "nickname"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn attributes(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self];
        while let Some(t) = stack.pop() {
            if let Transform::Attr(name) = t {
                out.insert(name.clone());
            }
            stack.extend(t.children());
        }
        out
    }

    /// Whether the transform depends on `now` (uses `now` or `today`), so that its result
    /// may change with time alone.
    ///
    /// ```
    /// # use attrflow::transform::Transform;
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(Transform::from_json(&json!({"lt": [{"attr": "endDate"}, {"today": {}}]}))?.uses_now());
    /// assert!(!Transform::from_json(&json!({"lower": {"attr": "mail"}}))?.uses_now());
    /// # Ok(())
    /// # }
    /// ```
    pub fn uses_now(&self) -> bool {
        let mut stack = vec![self];
        while let Some(t) = stack.pop() {
            if matches!(t, Transform::Now | Transform::Today) {
                return true;
            }
            stack.extend(t.children());
        }
        false
    }

    /// Evaluates the transform over `source` at time `now`.
    ///
    /// ```
    /// # use std::collections::BTreeMap;
    /// # use attrflow::{transform::Transform, Scalar, Value};
    /// # use serde_json::json;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let source = BTreeMap::from([("level".to_owned(), Value::single(Scalar::Integer(3)))]);
    /// let t = Transform::from_json(&json!({"lower": {"attr": "level"}}))?;
    /// let err = t.eval(&source, "2024-05-01T12:00:00Z".parse()?).err().ok_or("expected an error")?;
    /// assert_eq!(err.kind(), "wrong_type");
    /// assert_eq!(err.to_string(), "`lower` expects text, found integer `3`");
    /// # Ok(())
    /// # }
    /// ```
    pub fn eval(&self, source: &dyn AttributeSource, now: DateTime<Utc>) -> Result<Value, EvalError> {
        Evaluator {
            source,
            now,
            spent: std::cell::Cell::new(0),
        }
        .eval(self)
    }

    /// [`Transform::eval`] and the bytes of text it charged against the budget.
    #[cfg(test)]
    pub(crate) fn eval_charged(
        &self,
        source: &dyn AttributeSource,
        now: DateTime<Utc>,
    ) -> (Result<Value, EvalError>, usize) {
        let evaluator = Evaluator {
            source,
            now,
            spent: std::cell::Cell::new(0),
        };
        let result = evaluator.eval(self);
        (result, evaluator.spent.get())
    }
}

impl fmt::Display for Transform {
    /// The compact JSON spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl serde::Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.to_json(), serializer)
    }
}

impl<'de> serde::Deserialize<'de> for Transform {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Transform, D::Error> {
        let json = <Json as serde::Deserialize>::deserialize(deserializer)?;
        Transform::from_json(&json).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------------ evaluation

fn type_name(s: &Scalar) -> &'static str {
    match s {
        Scalar::Text(_) => "text",
        Scalar::Integer(_) => "integer",
        Scalar::Boolean(_) => "boolean",
        Scalar::Date(_) => "date",
        Scalar::Datetime(_) => "datetime",
    }
}

fn describe_scalar(s: &Scalar) -> String {
    format!("{} `{s}`", type_name(s))
}

fn describe(v: &Value) -> String {
    match v.scalars() {
        [] => "an empty value".to_owned(),
        [s] => describe_scalar(s),
        items => {
            let shown: Vec<String> = items.iter().take(SHOWN_VALUES).map(|s| format!("`{s}`")).collect();
            let more = if items.len() > SHOWN_VALUES { ", ..." } else { "" };
            format!("{} values [{}{more}]", items.len(), shown.join(", "))
        }
    }
}

fn boolean(b: bool) -> Value {
    Value::Single(Scalar::Boolean(b))
}

/// A text read as a date, or failing that as a datetime.
fn parse_point(text: &str) -> Option<Scalar> {
    Scalar::parse(text, ValueType::Date).or_else(|| Scalar::parse(text, ValueType::Datetime))
}

/// A text read as the type of `like` (never text, unless `like` is text).
fn coerce(text: &str, like: &Scalar) -> Option<Scalar> {
    match like {
        Scalar::Text(_) => Some(Scalar::Text(text.to_owned().into())),
        Scalar::Integer(_) => Scalar::parse(text, ValueType::Integer),
        Scalar::Boolean(_) => Scalar::parse(text, ValueType::Boolean),
        Scalar::Date(_) | Scalar::Datetime(_) => parse_point(text),
    }
}

/// How two scalars compare, with text parsed as the other side's type; `None` if they
/// cannot be compared.
fn compare_scalars(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Text(x), Scalar::Text(y)) => Some(x.cmp(y)),
        (Scalar::Integer(x), Scalar::Integer(y)) => Some(x.cmp(y)),
        (Scalar::Boolean(x), Scalar::Boolean(y)) => Some(x.cmp(y)),
        (Scalar::Date(x), Scalar::Date(y)) => Some(x.cmp(y)),
        (Scalar::Datetime(x), Scalar::Datetime(y)) => Some(x.cmp(y)),
        (Scalar::Date(x), Scalar::Datetime(y)) => Some(x.cmp(&y.date_naive())),
        (Scalar::Datetime(x), Scalar::Date(y)) => Some(x.date_naive().cmp(y)),
        (Scalar::Text(t), other) => match coerce(t, other)? {
            Scalar::Text(_) => None,
            parsed => compare_scalars(&parsed, other),
        },
        (other, Scalar::Text(t)) => match coerce(t, other)? {
            Scalar::Text(_) => None,
            parsed => compare_scalars(other, &parsed),
        },
        _ => None,
    }
}

fn scalars_equal(a: &Scalar, b: &Scalar) -> bool {
    compare_scalars(a, b) == Some(Ordering::Equal)
}

/// Equality of values: empty equals only empty; otherwise as sets.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.scalars(), b.scalars()) {
        ([], []) => true,
        ([], _) | (_, []) => false,
        (xs, ys) => {
            xs.iter().all(|x| ys.iter().any(|y| scalars_equal(x, y)))
                && ys.iter().all(|y| xs.iter().any(|x| scalars_equal(x, y)))
        }
    }
}

/// The one value of `v`, `None` if it is empty, an error if it holds several.
fn at_most_one<'a>(function: &str, v: &'a Value, expected: &str) -> Result<Option<&'a Scalar>, EvalError> {
    match v.scalars() {
        [] => Ok(None),
        [s] => Ok(Some(s)),
        _ => Err(EvalError::wrong_type(function, expected, describe(v))),
    }
}

/// The truth of a condition's result: empty is false, a boolean is itself.
fn truth(function: &str, v: &Value) -> Result<bool, EvalError> {
    match at_most_one(function, v, "a condition (a boolean)")? {
        None => Ok(false),
        Some(Scalar::Boolean(b)) => Ok(*b),
        Some(other) => Err(EvalError::wrong_type(
            function,
            "a condition (a boolean)",
            describe_scalar(other),
        )),
    }
}

/// Applies `f` to each value, keeping single single and multi multi.
fn map_scalars(v: Value, mut f: impl FnMut(&Scalar) -> Result<Scalar, EvalError>) -> Result<Value, EvalError> {
    match v {
        Value::Empty => Ok(Value::Empty),
        Value::Single(s) => Ok(Value::single(f(&s)?)),
        Value::Multi(items) => Ok(Value::multi(items.iter().map(f).collect::<Result<Vec<_>, _>>()?, true)),
    }
}

/// Applies a text function to each value.
fn map_text(function: &str, v: Value, f: impl Fn(&str) -> String) -> Result<Value, EvalError> {
    map_scalars(v, |s| match s {
        Scalar::Text(t) => Ok(Scalar::Text(f(t).into())),
        other => Err(EvalError::wrong_type(function, "text", describe_scalar(other))),
    })
}

#[derive(Clone, Copy)]
enum Point {
    Date(NaiveDate),
    Datetime(DateTime<Utc>),
}

impl Point {
    fn of(function: &str, s: &Scalar) -> Result<Point, EvalError> {
        let parsed = match s {
            Scalar::Text(t) => parse_point(t),
            other => Some(other.clone()),
        };
        match parsed {
            Some(Scalar::Date(d)) => Ok(Point::Date(d)),
            Some(Scalar::Datetime(d)) => Ok(Point::Datetime(d)),
            _ => Err(EvalError::wrong_type(
                function,
                "a date or datetime",
                describe_scalar(s),
            )),
        }
    }

    fn date(self) -> NaiveDate {
        match self {
            Point::Date(d) => d,
            Point::Datetime(d) => d.date_naive(),
        }
    }
}

struct Evaluator<'a> {
    source: &'a dyn AttributeSource,
    now: DateTime<Utc>,
    /// Bytes of text produced so far (see [`MAX_OUTPUT_BYTES`]).
    spent: std::cell::Cell<usize>,
}

impl Evaluator<'_> {
    /// Counts `bytes` of text about to be made against the budget.
    fn charge(&self, function: &str, bytes: usize) -> Result<(), EvalError> {
        let spent = self.spent.get().saturating_add(bytes);
        if spent > MAX_OUTPUT_BYTES {
            return Err(EvalError::TooLarge {
                function: function.to_owned(),
                limit: MAX_OUTPUT_BYTES,
            });
        }
        self.spent.set(spent);
        Ok(())
    }

    /// [`map_text`] with each result's size charged first (`size` bounds it from the
    /// input text).
    fn text_map(
        &self,
        function: &str,
        v: Value,
        size: impl Fn(&str) -> usize,
        f: impl Fn(&str) -> String,
    ) -> Result<Value, EvalError> {
        for s in v.scalars() {
            if let Scalar::Text(t) = s {
                self.charge(function, size(t))?;
            }
        }
        map_text(function, v, f)
    }

    fn eval(&self, t: &Transform) -> Result<Value, EvalError> {
        match t {
            Transform::Literal(v) => Ok(v.clone()),
            Transform::Attr(name) => self
                .source
                .get(name)
                .ok_or_else(|| EvalError::UnknownAttribute { name: name.clone() }),
            // Case mapping can grow a text up to three times (in UTF-8 bytes).
            Transform::Lower(x) => self.text_map("lower", self.eval(x)?, |s| s.len() * 3, str::to_lowercase),
            Transform::Upper(x) => self.text_map("upper", self.eval(x)?, |s| s.len() * 3, str::to_uppercase),
            Transform::Trim(x) => map_text("trim", self.eval(x)?, |s| s.trim().to_owned()),
            Transform::Concat(parts) => self.concat(parts),
            Transform::Substring { value, start, length } => map_text("substring", self.eval(value)?, |s| {
                s.chars().skip(*start).take(length.unwrap_or(usize::MAX)).collect()
            }),
            Transform::Replace { value, from, to } => {
                // The exact size of the result, counted before it is made.
                let grows = to.len().saturating_sub(from.len());
                let size = |s: &str| {
                    let hits = if from.is_empty() {
                        s.chars().count() + 1
                    } else {
                        s.matches(from.as_str()).count()
                    };
                    s.len().saturating_add(hits.saturating_mul(grows))
                };
                self.text_map("replace", self.eval(value)?, size, |s| s.replace(from.as_str(), to))
            }
            Transform::Lookup { value, table, default } => self.lookup(value, table, default.as_deref()),
            Transform::If {
                condition,
                then,
                otherwise,
            } => {
                if truth("if", &self.eval(condition)?)? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
            Transform::Eq(a, b) => Ok(boolean(values_equal(&self.eval(a)?, &self.eval(b)?))),
            Transform::Ne(a, b) => Ok(boolean(!values_equal(&self.eval(a)?, &self.eval(b)?))),
            Transform::In { value, list } => {
                let v = self.eval(value)?;
                Ok(boolean(
                    v.scalars().iter().any(|s| list.iter().any(|l| scalars_equal(s, l))),
                ))
            }
            Transform::Lt(a, b) => Ok(boolean(self.compare("lt", a, b)? == Some(Ordering::Less))),
            Transform::Gt(a, b) => Ok(boolean(self.compare("gt", a, b)? == Some(Ordering::Greater))),
            Transform::And(items) => {
                for c in items {
                    if !truth("and", &self.eval(c)?)? {
                        return Ok(boolean(false));
                    }
                }
                Ok(boolean(true))
            }
            Transform::Or(items) => {
                for c in items {
                    if truth("or", &self.eval(c)?)? {
                        return Ok(boolean(true));
                    }
                }
                Ok(boolean(false))
            }
            Transform::Not(c) => Ok(boolean(!truth("not", &self.eval(c)?)?)),
            Transform::IsEmpty(x) => Ok(boolean(self.eval(x)?.is_empty())),
            Transform::Now => Ok(Value::Single(Scalar::Datetime(self.now))),
            Transform::Today => Ok(Value::Single(Scalar::Date(self.now.date_naive()))),
            Transform::AddDays { value, days } => self.add_days(value, days),
            Transform::DaysBetween { from, to } => self.days_between(from, to),
            Transform::First(x) => Ok(self
                .eval(x)?
                .scalars()
                .iter()
                .min()
                .cloned()
                .map_or(Value::Empty, Value::single)),
            Transform::Join { value, separator } => {
                let v = self.eval(value)?;
                if v.is_empty() {
                    return Ok(Value::Empty);
                }
                let mut items = v.scalars().to_vec();
                items.sort();
                let texts: Vec<String> = items.iter().map(Scalar::to_string).collect();
                let size = texts.iter().map(String::len).sum::<usize>() + separator.len() * texts.len();
                self.charge("join", size)?;
                Ok(Value::single(Scalar::Text(texts.join(separator).into())))
            }
            Transform::Split { value, separator } => {
                let v = self.eval(value)?;
                let mut parts = Vec::new();
                for s in v.scalars() {
                    match s {
                        Scalar::Text(t) => {
                            parts.extend(t.split(separator.as_str()).map(|p| Scalar::Text(p.to_owned().into())))
                        }
                        other => return Err(EvalError::wrong_type("split", "text", describe_scalar(other))),
                    }
                }
                Ok(Value::multi(parts, true))
            }
        }
    }

    fn concat(&self, parts: &[Transform]) -> Result<Value, EvalError> {
        let mut results = vec![String::new()];
        let mut multi = false;
        for part in parts {
            let v = self.eval(part)?;
            let texts: Vec<String> = match &v {
                Value::Multi(items) if !items.is_empty() => {
                    multi = true;
                    items.iter().map(Scalar::to_string).collect()
                }
                other => vec![other.scalars().first().map(Scalar::to_string).unwrap_or_default()],
            };
            let count = results
                .len()
                .checked_mul(texts.len())
                .filter(|n| *n <= MAX_COMBINATIONS)
                .ok_or_else(|| {
                    EvalError::invalid(
                        "concat",
                        format!("its multi-valued arguments combine into more than {MAX_COMBINATIONS} texts"),
                    )
                })?;
            let mut next = Vec::with_capacity(count);
            for head in &results {
                for tail in &texts {
                    self.charge("concat", head.len() + tail.len())?;
                    next.push(format!("{head}{tail}"));
                }
            }
            results = next;
        }
        if multi {
            Ok(Value::multi(
                results.into_iter().map(|r| Scalar::Text(r.into())).collect(),
                true,
            ))
        } else {
            Ok(results
                .pop()
                .map_or(Value::Empty, |s| Value::single(Scalar::Text(s.into()))))
        }
    }

    fn lookup(
        &self,
        value: &Transform,
        table: &BTreeMap<String, Value>,
        default: Option<&Transform>,
    ) -> Result<Value, EvalError> {
        let default_value = || match default {
            Some(d) => self.eval(d),
            None => Ok(Value::Empty),
        };
        match self.eval(value)? {
            Value::Empty => default_value(),
            Value::Single(s) => match table.get(&s.to_string()) {
                Some(found) => Ok(found.clone()),
                None => default_value(),
            },
            Value::Multi(items) => {
                let mut out = Vec::new();
                let mut fallback: Option<Value> = None;
                for s in &items {
                    match table.get(&s.to_string()) {
                        Some(found) => out.extend(found.scalars().iter().cloned()),
                        None => {
                            if fallback.is_none() {
                                fallback = Some(default_value()?);
                            }
                            if let Some(f) = &fallback {
                                out.extend(f.scalars().iter().cloned());
                            }
                        }
                    }
                }
                Ok(Value::multi(out, true))
            }
        }
    }

    fn compare(&self, function: &str, a: &Transform, b: &Transform) -> Result<Option<Ordering>, EvalError> {
        let (a, b) = (self.eval(a)?, self.eval(b)?);
        let expected = "a single value";
        let (Some(x), Some(y)) = (
            at_most_one(function, &a, expected)?,
            at_most_one(function, &b, expected)?,
        ) else {
            return Ok(None);
        };
        compare_scalars(x, y).map(Some).ok_or_else(|| {
            EvalError::wrong_type(
                function,
                "two values of comparable types",
                format!("{} and {}", describe_scalar(x), describe_scalar(y)),
            )
        })
    }

    fn add_days(&self, value: &Transform, days: &Transform) -> Result<Value, EvalError> {
        let v = self.eval(value)?;
        if v.is_empty() {
            return Ok(Value::Empty);
        }
        let d = self.eval(days)?;
        let expected = "an integer number of days";
        let n = match at_most_one("add_days", &d, expected)? {
            None => return Ok(Value::Empty),
            Some(Scalar::Integer(n)) => *n,
            Some(s @ Scalar::Text(t)) => match Scalar::parse(t, ValueType::Integer) {
                Some(Scalar::Integer(n)) => n,
                _ => return Err(EvalError::wrong_type("add_days", expected, describe_scalar(s))),
            },
            Some(other) => return Err(EvalError::wrong_type("add_days", expected, describe_scalar(other))),
        };
        let out_of_range = |s: &Scalar| {
            EvalError::invalid(
                "add_days",
                format!("adding {n} days to `{s}` leaves the supported range of dates"),
            )
        };
        map_scalars(v, |s| {
            let delta = TimeDelta::try_days(n).ok_or_else(|| out_of_range(s))?;
            match Point::of("add_days", s)? {
                Point::Date(d) => d.checked_add_signed(delta).map(Scalar::Date),
                Point::Datetime(d) => d.checked_add_signed(delta).map(Scalar::Datetime),
            }
            .ok_or_else(|| out_of_range(s))
        })
    }

    fn days_between(&self, from: &Transform, to: &Transform) -> Result<Value, EvalError> {
        let (a, b) = (self.eval(from)?, self.eval(to)?);
        let expected = "a single date or datetime";
        let (Some(x), Some(y)) = (
            at_most_one("days_between", &a, expected)?,
            at_most_one("days_between", &b, expected)?,
        ) else {
            return Ok(Value::Empty);
        };
        let days = match (Point::of("days_between", x)?, Point::of("days_between", y)?) {
            (Point::Datetime(x), Point::Datetime(y)) => y.signed_duration_since(x).num_days(),
            (x, y) => y.date().signed_duration_since(x.date()).num_days(),
        };
        Ok(Value::Single(Scalar::Integer(days)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn date(s: &str) -> Value {
        Value::single(Scalar::Date(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()))
    }

    fn text(s: &str) -> Value {
        Value::single(Scalar::Text(s.to_owned().into()))
    }

    fn texts(items: &[&str]) -> Value {
        Value::multi(
            items.iter().map(|s| Scalar::Text((*s).to_owned().into())).collect(),
            true,
        )
    }

    fn source() -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("givenName".to_owned(), text("Ann")),
            ("sn".to_owned(), text("Lee")),
            ("mail".to_owned(), text("  Ann.Lee@Example.COM ")),
            ("level".to_owned(), Value::single(Scalar::Integer(7))),
            ("contractor".to_owned(), Value::single(Scalar::Boolean(false))),
            ("hireDate".to_owned(), date("2024-03-01")),
            ("terminationDate".to_owned(), Value::Empty),
            (
                "lastLogin".to_owned(),
                Value::single(Scalar::Datetime(at("2024-04-30T22:00:00Z"))),
            ),
            ("groups".to_owned(), texts(&["Sales", "HR"])),
            ("country".to_owned(), text("DE")),
        ])
    }

    const NOW: &str = "2024-05-01T12:00:00Z";

    fn eval(j: Json) -> Result<Value, EvalError> {
        Transform::from_json(&j).unwrap().eval(&source(), at(NOW))
    }

    fn ok(j: Json) -> Json {
        eval(j).unwrap().to_json()
    }

    fn parse_err(j: Json) -> TransformError {
        Transform::from_json(&j).unwrap_err()
    }

    // ---------------------------------------------------------------- literals, attr

    #[test]
    fn literals() {
        assert_eq!(ok(json!("x")), json!("x"));
        assert_eq!(ok(json!(12)), json!(12));
        assert_eq!(ok(json!(-3)), json!(-3));
        assert_eq!(ok(json!(true)), json!(true));
        assert_eq!(ok(json!(null)), json!(null));
        assert_eq!(ok(json!("")), json!(null));
        assert_eq!(ok(json!([])), json!(null));
        assert_eq!(ok(json!(["b", "a", "b", null, ""])), json!(["a", "b"]));
        assert_eq!(eval(json!("2024-01-01")).unwrap(), text("2024-01-01"));
    }

    #[test]
    fn bad_literals() {
        let e = parse_err(json!(1.5));
        assert_eq!(e.path(), "");
        assert!(e.message().contains("1.5"), "{e}");
        let e = parse_err(json!(["a", ["b"]]));
        assert_eq!(e.path(), "[1]");
        let e = parse_err(json!({"concat": ["a", ["b", {"attr": "x"}]]}));
        assert_eq!(e.path(), "concat[1][1]");
        assert!(parse_err(json!(u64::MAX)).message().contains("64 bits"));
    }

    #[test]
    fn attr() {
        assert_eq!(ok(json!({"attr": "givenName"})), json!("Ann"));
        assert_eq!(ok(json!({"attr": "terminationDate"})), json!(null));
        let e = eval(json!({"attr": "nickname"})).unwrap_err();
        assert_eq!(
            e,
            EvalError::UnknownAttribute {
                name: "nickname".into()
            }
        );
        assert_eq!(e.kind(), "unknown_attribute");
        assert_eq!(e.to_string(), "unknown attribute `nickname`");
        assert_eq!(parse_err(json!({"attr": ""})).path(), "attr");
        assert_eq!(parse_err(json!({"attr": 3})).path(), "attr");
        assert_eq!(parse_err(json!({"attr": {"attr": "x"}})).path(), "attr");
    }

    #[test]
    fn sources() {
        let t = Transform::from_json(&json!({"concat": [{"attr": "a"}, {"attr": "b"}]})).unwrap();
        let fs = FnSource(|name: &str| match name {
            "a" => Some(text("x")),
            "b" => Some(Value::Empty),
            _ => None,
        });
        assert_eq!(t.eval(&fs, at(NOW)).unwrap(), text("x"));
        assert!(format!("{fs:?}").contains("FnSource"));
        let hm: HashMap<String, Value> = HashMap::from([("a".to_owned(), text("1")), ("b".to_owned(), text("2"))]);
        assert_eq!(t.eval(&hm, at(NOW)).unwrap(), text("12"));
        let missing = FnSource(|_: &str| None);
        assert_eq!(t.eval(&missing, at(NOW)).unwrap_err().kind(), "unknown_attribute");
    }

    // ---------------------------------------------------------------- text

    #[test]
    fn lower_upper_trim() {
        assert_eq!(ok(json!({"lower": {"attr": "givenName"}})), json!("ann"));
        assert_eq!(ok(json!({"upper": {"attr": "givenName"}})), json!("ANN"));
        assert_eq!(ok(json!({"trim": {"attr": "mail"}})), json!("Ann.Lee@Example.COM"));
        assert_eq!(
            ok(json!({"lower": {"trim": {"attr": "mail"}}})),
            json!("ann.lee@example.com")
        );
        assert_eq!(ok(json!({"trim": "   "})), json!(null));
        for f in ["lower", "upper", "trim"] {
            assert_eq!(ok(json!({f: {"attr": "terminationDate"}})), json!(null));
            assert_eq!(ok(json!({f: null})), json!(null));
            let e = eval(json!({f: {"attr": "level"}})).unwrap_err();
            assert_eq!(e.kind(), "wrong_type");
            assert_eq!(e.to_string(), format!("`{f}` expects text, found integer `7`"));
        }
        assert_eq!(
            eval(json!({"lower": {"attr": "hireDate"}})).unwrap_err().to_string(),
            "`lower` expects text, found date `2024-03-01`"
        );
        assert_eq!(eval(json!({"upper": true})).unwrap_err().kind(), "wrong_type");
    }

    #[test]
    fn text_functions_apply_per_element() {
        assert_eq!(ok(json!({"lower": {"attr": "groups"}})), json!(["hr", "sales"]));
        assert_eq!(ok(json!({"upper": ["a", "A", "b"]})), json!(["A", "B"]));
        assert_eq!(ok(json!({"trim": [" a", "a ", "  "]})), json!(["a"]));
        assert_eq!(ok(json!({"substring": [{"attr": "groups"}, 0, 1]})), json!(["H", "S"]));
        assert_eq!(
            ok(json!({"replace": [["a-b", "c-d"], "-", "+"]})),
            json!(["a+b", "c+d"])
        );
        assert_eq!(eval(json!({"lower": ["a", 1]})).unwrap_err().kind(), "wrong_type");
    }

    #[test]
    fn concat() {
        assert_eq!(
            ok(json!({"concat": [{"attr": "givenName"}, " ", {"attr": "sn"}]})),
            json!("Ann Lee")
        );
        assert_eq!(
            ok(json!({"concat": [{"attr": "givenName"}, {"attr": "terminationDate"}, "!"]})),
            json!("Ann!")
        );
        assert_eq!(ok(json!({"concat": [null, ""]})), json!(null));
        assert_eq!(
            ok(json!({"concat": [{"attr": "level"}, "/", {"attr": "hireDate"}, "/", {"attr": "contractor"}]})),
            json!("7/2024-03-01/false")
        );
        assert_eq!(
            ok(json!({"concat": ["g-", {"attr": "groups"}]})),
            json!(["g-HR", "g-Sales"])
        );
        assert_eq!(
            ok(json!({"concat": [["a", "b"], "-", ["x", "y"]]})),
            json!(["a-x", "a-y", "b-x", "b-y"])
        );
        let many: Vec<String> = (0..200).map(|i| i.to_string()).collect();
        let e = eval(json!({"concat": [many, many]})).unwrap_err();
        assert_eq!(e.kind(), "invalid_argument");
        assert!(e.to_string().starts_with("invalid argument to `concat`"), "{e}");
        assert_eq!(parse_err(json!({"concat": []})).path(), "concat");
        assert_eq!(parse_err(json!({"concat": "a"})).path(), "concat");
    }

    #[test]
    fn substring() {
        assert_eq!(ok(json!({"substring": ["abcdef", 1, 3]})), json!("bcd"));
        assert_eq!(ok(json!({"substring": ["abcdef", 2]})), json!("cdef"));
        assert_eq!(ok(json!({"substring": ["abc", 1, 100]})), json!("bc"));
        assert_eq!(ok(json!({"substring": ["abc", 10, 2]})), json!(null));
        assert_eq!(ok(json!({"substring": ["abc", 0, 0]})), json!(null));
        assert_eq!(ok(json!({"substring": ["Åsa Öberg", 4, 2]})), json!("Öb"));
        assert_eq!(ok(json!({"substring": ["日本語テキスト", 1, 2]})), json!("本語"));
        assert_eq!(
            ok(json!({"substring": [{"attr": "terminationDate"}, 0, 1]})),
            json!(null)
        );
        assert_eq!(
            ok(json!({"substring": [{"attr": "givenName"}, 18_446_744_073_709_551_615_u64, 1]})),
            json!(null)
        );
        assert_eq!(eval(json!({"substring": [5, 0, 1]})).unwrap_err().kind(), "wrong_type");
        assert_eq!(parse_err(json!({"substring": ["abc", -1, 2]})).path(), "substring[1]");
        assert_eq!(parse_err(json!({"substring": ["abc", 0, 1.5]})).path(), "substring[2]");
        let e = parse_err(json!({"substring": ["abc", {"attr": "level"}, 2]}));
        assert_eq!(e.path(), "substring[1]");
        assert!(e.message().contains("literal"), "{e}");
        assert_eq!(parse_err(json!({"substring": ["abc"]})).path(), "substring");
        assert_eq!(parse_err(json!({"substring": ["abc", 1, 2, 3]})).path(), "substring");
        assert_eq!(
            parse_err(json!({"substring": [{"nope": 1}, 1, 2]})).path(),
            "substring[0]"
        );
    }

    #[test]
    fn replace() {
        assert_eq!(ok(json!({"replace": ["a b  c", " ", "."]})), json!("a.b..c"));
        assert_eq!(ok(json!({"replace": ["Straße", "ß", "ss"]})), json!("Strasse"));
        assert_eq!(ok(json!({"replace": ["aaa", "a", ""]})), json!(null));
        assert_eq!(ok(json!({"replace": ["AbA", "a", "x"]})), json!("AbA"));
        assert_eq!(ok(json!({"replace": [null, "a", "b"]})), json!(null));
        assert_eq!(
            eval(json!({"replace": [{"attr": "level"}, "7", "8"]}))
                .unwrap_err()
                .kind(),
            "wrong_type"
        );
        assert_eq!(parse_err(json!({"replace": ["abc", "", "x"]})).path(), "replace[1]");
        assert_eq!(
            parse_err(json!({"replace": ["abc", "a", {"attr": "sn"}]})).path(),
            "replace[2]"
        );
        assert_eq!(parse_err(json!({"replace": ["abc", 1, "x"]})).path(), "replace[1]");
        assert_eq!(parse_err(json!({"replace": ["abc", "a"]})).path(), "replace");
    }

    #[test]
    fn lookup() {
        let table = json!({"DE": "Germany", "FR": "France", "7": ["a", "b"]});
        assert_eq!(
            ok(json!({"lookup": {"value": {"attr": "country"}, "table": table, "default": "Elsewhere"}})),
            json!("Germany")
        );
        assert_eq!(
            ok(json!({"lookup": {"value": "IT", "table": table, "default": "Elsewhere"}})),
            json!("Elsewhere")
        );
        assert_eq!(ok(json!({"lookup": {"value": "IT", "table": table}})), json!(null));
        assert_eq!(ok(json!({"lookup": {"value": "de", "table": table}})), json!(null));
        assert_eq!(
            ok(json!({"lookup": {"value": {"attr": "level"}, "table": table}})),
            json!(["a", "b"])
        );
        assert_eq!(
            ok(json!({"lookup": {"value": null, "table": table, "default": {"attr": "sn"}}})),
            json!("Lee")
        );
        assert_eq!(
            ok(json!({"lookup": {"value": ["DE", "FR", "IT", "ES"], "table": table, "default": "?"}})),
            json!(["?", "France", "Germany"])
        );
        assert_eq!(
            ok(json!({"lookup": {"value": ["DE", "IT"], "table": table, "default": {"attr": "country"}}})),
            json!(["DE", "Germany"])
        );
        // The default is evaluated only when needed.
        assert_eq!(
            ok(json!({"lookup": {"value": "DE", "table": table, "default": {"lower": 1}}})),
            json!("Germany")
        );
        assert_eq!(
            eval(json!({"lookup": {"value": "IT", "table": table, "default": {"attr": "nope"}}}))
                .unwrap_err()
                .kind(),
            "unknown_attribute"
        );
        assert_eq!(parse_err(json!({"lookup": {"table": {}}})).path(), "lookup");
        assert_eq!(parse_err(json!({"lookup": {"value": "x"}})).path(), "lookup");
        assert_eq!(
            parse_err(json!({"lookup": {"value": "x", "table": []}})).path(),
            "lookup.table"
        );
        assert_eq!(
            parse_err(json!({"lookup": {"value": "x", "table": {"a": {"attr": "sn"}}}})).path(),
            "lookup.table.a"
        );
        let e = parse_err(json!({"lookup": {"value": "x", "table": {}, "fallback": 1}}));
        assert!(e.message().contains("`fallback`"), "{e}");
        assert_eq!(parse_err(json!({"lookup": ["x", {}]})).path(), "lookup");
        assert_eq!(
            parse_err(json!({"lookup": {"value": {"x": 1}, "table": {}}})).path(),
            "lookup.value"
        );
        assert_eq!(
            parse_err(json!({"lookup": {"value": "x", "table": {}, "default": {"x": 1}}})).path(),
            "lookup.default"
        );
    }

    // ---------------------------------------------------------------- conditions

    #[test]
    fn if_then_else() {
        assert_eq!(ok(json!({"if": [true, "a", "b"]})), json!("a"));
        assert_eq!(ok(json!({"if": [false, "a", "b"]})), json!("b"));
        assert_eq!(ok(json!({"if": [null, "a", "b"]})), json!("b"));
        assert_eq!(ok(json!({"if": [{"attr": "contractor"}, "ext", "int"]})), json!("int"));
        // Only the chosen branch is evaluated.
        assert_eq!(ok(json!({"if": [true, "a", {"attr": "nope"}]})), json!("a"));
        let e = eval(json!({"if": ["yes", "a", "b"]})).unwrap_err();
        assert_eq!(e.to_string(), "`if` expects a condition (a boolean), found text `yes`");
        assert_eq!(
            eval(json!({"if": [[true, false], "a", "b"]})).unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(parse_err(json!({"if": [true, "a"]})).path(), "if");
        assert_eq!(parse_err(json!({"if": {"attr": "x"}})).path(), "if");
        assert_eq!(
            parse_err(json!({"if": [true, "a", {"lower": {}}]})).path(),
            "if[2].lower"
        );
    }

    #[test]
    fn eq_and_ne() {
        assert_eq!(ok(json!({"eq": ["a", "a"]})), json!(true));
        assert_eq!(ok(json!({"eq": ["a", "A"]})), json!(false));
        assert_eq!(ok(json!({"ne": ["a", "A"]})), json!(true));
        assert_eq!(ok(json!({"eq": [null, ""]})), json!(true));
        assert_eq!(ok(json!({"eq": [{"attr": "terminationDate"}, null]})), json!(true));
        assert_eq!(ok(json!({"eq": ["a", null]})), json!(false));
        assert_eq!(ok(json!({"eq": [12, "12"]})), json!(true));
        assert_eq!(ok(json!({"eq": [{"attr": "level"}, " 7 "]})), json!(true));
        assert_eq!(ok(json!({"eq": [{"attr": "level"}, "seven"]})), json!(false));
        assert_eq!(ok(json!({"eq": [{"attr": "hireDate"}, "2024-03-01"]})), json!(true));
        assert_eq!(ok(json!({"eq": ["2024-03-01", {"attr": "hireDate"}]})), json!(true));
        assert_eq!(ok(json!({"eq": [{"attr": "hireDate"}, "1 March 2024"]})), json!(false));
        assert_eq!(ok(json!({"eq": [{"attr": "contractor"}, "FALSE"]})), json!(true));
        assert_eq!(ok(json!({"eq": [{"attr": "contractor"}, false]})), json!(true));
        assert_eq!(ok(json!({"eq": [1, true]})), json!(false));
        assert_eq!(ok(json!({"ne": [1, true]})), json!(true));
        // text against text is exact, even when both look like dates or numbers
        assert_eq!(ok(json!({"eq": ["12", "012"]})), json!(false));
        // date against datetime: the datetime's UTC date
        assert_eq!(ok(json!({"eq": [{"attr": "lastLogin"}, "2024-04-30"]})), json!(true));
        assert_eq!(
            ok(json!({"eq": [{"attr": "lastLogin"}, "2024-04-30T22:00:00Z"]})),
            json!(true)
        );
        assert_eq!(
            ok(json!({"eq": [{"attr": "lastLogin"}, "2024-05-01T00:00:00+02:00"]})),
            json!(true)
        );
        // sets
        assert_eq!(ok(json!({"eq": [{"attr": "groups"}, ["HR", "Sales"]]})), json!(true));
        assert_eq!(
            ok(json!({"eq": [{"attr": "groups"}, ["Sales", "HR", "HR"]]})),
            json!(true)
        );
        assert_eq!(ok(json!({"eq": [{"attr": "groups"}, ["HR"]]})), json!(false));
        assert_eq!(ok(json!({"eq": ["HR", ["HR"]]})), json!(true));
        assert_eq!(ok(json!({"eq": [[1, 2], ["2", "1"]]})), json!(true));
        assert_eq!(parse_err(json!({"eq": ["a"]})).path(), "eq");
        assert_eq!(parse_err(json!({"ne": ["a", "b", "c"]})).path(), "ne");
    }

    #[test]
    fn in_list() {
        assert_eq!(ok(json!({"in": [{"attr": "country"}, ["DE", "FR"]]})), json!(true));
        assert_eq!(ok(json!({"in": [{"attr": "country"}, ["de", "FR"]]})), json!(false));
        assert_eq!(ok(json!({"in": [{"attr": "country"}, "DE"]})), json!(true));
        assert_eq!(ok(json!({"in": [{"attr": "level"}, ["5", "7"]]})), json!(true));
        assert_eq!(ok(json!({"in": [{"attr": "level"}, [5, 6]]})), json!(false));
        assert_eq!(ok(json!({"in": [{"attr": "groups"}, ["HR", "IT"]]})), json!(true));
        assert_eq!(ok(json!({"in": [{"attr": "groups"}, ["IT"]]})), json!(false));
        assert_eq!(
            ok(json!({"in": [{"attr": "terminationDate"}, ["", null, "x"]]})),
            json!(false)
        );
        assert_eq!(ok(json!({"in": ["x", []]})), json!(false));
        assert_eq!(ok(json!({"in": [{"attr": "hireDate"}, ["2024-03-01"]]})), json!(true));
        let e = parse_err(json!({"in": ["x", {"attr": "groups"}]}));
        assert_eq!(e.path(), "in[1]");
        assert!(e.message().contains("literal"), "{e}");
        assert_eq!(parse_err(json!({"in": ["x", [{"attr": "groups"}]]})).path(), "in[1][0]");
        assert_eq!(parse_err(json!({"in": ["x"]})).path(), "in");
    }

    #[test]
    fn lt_and_gt() {
        assert_eq!(ok(json!({"lt": [1, 2]})), json!(true));
        assert_eq!(ok(json!({"gt": [1, 2]})), json!(false));
        assert_eq!(ok(json!({"lt": [2, 2]})), json!(false));
        assert_eq!(ok(json!({"gt": [{"attr": "level"}, "10"]})), json!(false));
        assert_eq!(ok(json!({"lt": ["10", "9"]})), json!(true)); // text order
        assert_eq!(ok(json!({"lt": ["a", "b"]})), json!(true));
        assert_eq!(ok(json!({"lt": [false, true]})), json!(true));
        assert_eq!(ok(json!({"lt": [{"attr": "hireDate"}, {"today": {}}]})), json!(true));
        assert_eq!(ok(json!({"gt": [{"attr": "hireDate"}, "2024-02-29"]})), json!(true));
        assert_eq!(ok(json!({"gt": ["2024-02-29", {"attr": "hireDate"}]})), json!(false));
        assert_eq!(ok(json!({"lt": [{"attr": "lastLogin"}, {"now": {}}]})), json!(true));
        assert_eq!(ok(json!({"lt": [{"attr": "lastLogin"}, {"today": {}}]})), json!(true));
        assert_eq!(ok(json!({"lt": [{"attr": "lastLogin"}, "2024-04-30"]})), json!(false));
        assert_eq!(
            ok(json!({"lt": [{"attr": "lastLogin"}, "2024-04-30T23:00:00Z"]})),
            json!(true)
        );
        // empty on either side: false
        assert_eq!(
            ok(json!({"lt": [{"attr": "terminationDate"}, {"today": {}}]})),
            json!(false)
        );
        assert_eq!(
            ok(json!({"gt": [{"attr": "terminationDate"}, {"today": {}}]})),
            json!(false)
        );
        assert_eq!(ok(json!({"gt": [5, null]})), json!(false));
        // incomparable
        let e = eval(json!({"lt": [{"attr": "hireDate"}, "soon"]})).unwrap_err();
        assert_eq!(e.kind(), "wrong_type");
        assert_eq!(
            e.to_string(),
            "`lt` expects two values of comparable types, found date `2024-03-01` and text `soon`"
        );
        assert_eq!(eval(json!({"gt": [1, true]})).unwrap_err().kind(), "wrong_type");
        let e = eval(json!({"gt": [{"attr": "groups"}, "a"]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`gt` expects a single value, found 2 values [`HR`, `Sales`]"
        );
        assert_eq!(ok(json!({"gt": [["b"], "a"]})), json!(true));
        assert_eq!(parse_err(json!({"lt": 1})).path(), "lt");
    }

    #[test]
    fn and_or_not() {
        assert_eq!(ok(json!({"and": [true, true]})), json!(true));
        assert_eq!(ok(json!({"and": [true, false]})), json!(false));
        assert_eq!(ok(json!({"and": [true, null]})), json!(false));
        assert_eq!(ok(json!({"or": [false, true]})), json!(true));
        assert_eq!(ok(json!({"or": [false, null]})), json!(false));
        assert_eq!(ok(json!({"not": true})), json!(false));
        assert_eq!(ok(json!({"not": null})), json!(true));
        assert_eq!(ok(json!({"not": {"attr": "contractor"}})), json!(true));
        // evaluation stops early
        assert_eq!(ok(json!({"and": [false, {"attr": "nope"}]})), json!(false));
        assert_eq!(ok(json!({"or": [true, {"lower": 1}]})), json!(true));
        assert_eq!(
            eval(json!({"and": [true, {"attr": "nope"}]})).unwrap_err().kind(),
            "unknown_attribute"
        );
        assert_eq!(eval(json!({"and": [true, "x"]})).unwrap_err().kind(), "wrong_type");
        assert_eq!(eval(json!({"or": [1]})).unwrap_err().kind(), "wrong_type");
        assert_eq!(eval(json!({"not": "false"})).unwrap_err().kind(), "wrong_type");
        assert_eq!(parse_err(json!({"and": []})).path(), "and");
        assert_eq!(parse_err(json!({"or": true})).path(), "or");
        assert_eq!(parse_err(json!({"or": [true, {"eq": [1]}]})).path(), "or[1].eq");
    }

    #[test]
    fn is_empty() {
        assert_eq!(ok(json!({"is_empty": {"attr": "terminationDate"}})), json!(true));
        assert_eq!(ok(json!({"is_empty": {"attr": "hireDate"}})), json!(false));
        assert_eq!(ok(json!({"is_empty": ""})), json!(true));
        assert_eq!(ok(json!({"is_empty": []})), json!(true));
        assert_eq!(ok(json!({"is_empty": {"trim": " "}})), json!(true));
        assert_eq!(ok(json!({"is_empty": {"attr": "groups"}})), json!(false));
        assert_eq!(ok(json!({"is_empty": false})), json!(false));
    }

    // ---------------------------------------------------------------- dates

    #[test]
    fn now_and_today() {
        assert_eq!(ok(json!({"now": {}})), json!("2024-05-01T12:00:00Z"));
        assert_eq!(ok(json!({"today": {}})), json!("2024-05-01"));
        assert_eq!(ok(json!({"today": null})), json!("2024-05-01"));
        assert_eq!(ok(json!({"now": []})), json!("2024-05-01T12:00:00Z"));
        let t = Transform::from_json(&json!({"today": {}})).unwrap();
        assert_eq!(
            t.eval(&source(), at("2024-12-31T23:59:59-05:00")).unwrap(),
            date("2025-01-01")
        );
        assert_eq!(parse_err(json!({"now": {"tz": "UTC"}})).path(), "now");
        assert_eq!(parse_err(json!({"today": 1})).path(), "today");
    }

    #[test]
    fn add_days() {
        assert_eq!(ok(json!({"add_days": [{"attr": "hireDate"}, 30]})), json!("2024-03-31"));
        assert_eq!(ok(json!({"add_days": [{"attr": "hireDate"}, -1]})), json!("2024-02-29"));
        assert_eq!(
            ok(json!({"add_days": [{"today": {}}, {"attr": "level"}]})),
            json!("2024-05-08")
        );
        assert_eq!(
            ok(json!({"add_days": [{"now": {}}, -2]})),
            json!("2024-04-29T12:00:00Z")
        );
        assert_eq!(ok(json!({"add_days": ["2024-01-31", "1"]})), json!("2024-02-01"));
        assert_eq!(
            eval(json!({"add_days": ["2024-01-31", 1]})).unwrap(),
            date("2024-02-01")
        );
        assert_eq!(
            ok(json!({"add_days": ["2024-01-31T10:00:00+01:00", 1]})),
            json!("2024-02-01T09:00:00Z")
        );
        assert_eq!(
            ok(json!({"add_days": [["2024-01-01", "2024-06-01"], 1]})),
            json!(["2024-01-02", "2024-06-02"])
        );
        assert_eq!(ok(json!({"add_days": [{"attr": "terminationDate"}, 1]})), json!(null));
        assert_eq!(ok(json!({"add_days": [{"attr": "hireDate"}, null]})), json!(null));
        assert_eq!(ok(json!({"add_days": [{"attr": "hireDate"}, 0]})), json!("2024-03-01"));
        let e = eval(json!({"add_days": [{"attr": "hireDate"}, "soon"]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`add_days` expects an integer number of days, found text `soon`"
        );
        assert_eq!(
            eval(json!({"add_days": [{"attr": "hireDate"}, [1, 2]]}))
                .unwrap_err()
                .kind(),
            "wrong_type"
        );
        assert_eq!(
            eval(json!({"add_days": [{"attr": "hireDate"}, true]}))
                .unwrap_err()
                .kind(),
            "wrong_type"
        );
        let e = eval(json!({"add_days": [{"attr": "level"}, 1]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`add_days` expects a date or datetime, found integer `7`"
        );
        assert_eq!(
            eval(json!({"add_days": ["tomorrow", 1]})).unwrap_err().kind(),
            "wrong_type"
        );
        for n in [i64::MAX, i64::MIN, 1_000_000_000, -1_000_000_000] {
            let e = eval(json!({"add_days": [{"attr": "hireDate"}, n]})).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument", "{n}: {e}");
            let e = eval(json!({"add_days": [{"now": {}}, n]})).unwrap_err();
            assert_eq!(e.kind(), "invalid_argument", "{n}: {e}");
        }
        assert_eq!(parse_err(json!({"add_days": [{"today": {}}]})).path(), "add_days");
        assert_eq!(
            parse_err(json!({"add_days": [{"today": {}}, {"x": 1}]})).path(),
            "add_days[1]"
        );
    }

    #[test]
    fn days_between() {
        assert_eq!(
            ok(json!({"days_between": [{"attr": "hireDate"}, {"today": {}}]})),
            json!(61)
        );
        assert_eq!(
            ok(json!({"days_between": [{"today": {}}, {"attr": "hireDate"}]})),
            json!(-61)
        );
        assert_eq!(
            ok(json!({"days_between": [{"attr": "hireDate"}, {"now": {}}]})),
            json!(61)
        );
        assert_eq!(ok(json!({"days_between": ["2024-01-01", "2025-01-01"]})), json!(366));
        // two datetimes: whole 24-hour days, towards zero
        assert_eq!(
            ok(json!({"days_between": [{"attr": "lastLogin"}, {"now": {}}]})),
            json!(0)
        );
        assert_eq!(
            ok(json!({"days_between": ["2024-01-01T12:00:00Z", "2024-01-03T11:59:59Z"]})),
            json!(1)
        );
        assert_eq!(
            ok(json!({"days_between": ["2024-01-03T11:59:59Z", "2024-01-01T12:00:00Z"]})),
            json!(-1)
        );
        // a date and a datetime: calendar days
        assert_eq!(
            ok(json!({"days_between": [{"attr": "lastLogin"}, {"today": {}}]})),
            json!(1)
        );
        assert_eq!(
            ok(json!({"days_between": [{"attr": "terminationDate"}, {"today": {}}]})),
            json!(null)
        );
        assert_eq!(ok(json!({"days_between": [{"today": {}}, null]})), json!(null));
        assert_eq!(
            eval(json!({"days_between": [1, {"today": {}}]})).unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(
            eval(json!({"days_between": [["2024-01-01", "2024-01-02"], {"today": {}}]}))
                .unwrap_err()
                .kind(),
            "wrong_type"
        );
        // the extremes of the date range (years 0000-9999, SPEC 1) do not overflow
        let far = json!({"days_between": ["0000-01-01", "9999-12-31"]});
        assert_eq!(ok(far), json!(3_652_424));
        assert_eq!(parse_err(json!({"days_between": "2024-01-01"})).path(), "days_between");
    }

    // ---------------------------------------------------------------- multi

    #[test]
    fn first_join_split() {
        assert_eq!(ok(json!({"first": {"attr": "groups"}})), json!("HR"));
        assert_eq!(ok(json!({"first": {"attr": "givenName"}})), json!("Ann"));
        assert_eq!(ok(json!({"first": {"attr": "terminationDate"}})), json!(null));
        assert_eq!(ok(json!({"first": [3, 10, 2]})), json!(2));
        assert_eq!(ok(json!({"join": [{"attr": "groups"}, ", "]})), json!("HR, Sales"));
        assert_eq!(ok(json!({"join": [[10, 9], ""]})), json!("910"));
        assert_eq!(ok(json!({"join": [{"attr": "givenName"}, ";"]})), json!("Ann"));
        assert_eq!(ok(json!({"join": [null, ";"]})), json!(null));
        assert_eq!(ok(json!({"split": ["a;b;;a", ";"]})), json!(["a", "b"]));
        assert_eq!(ok(json!({"split": ["a, b", ","]})), json!([" b", "a"]));
        assert_eq!(ok(json!({"trim": {"split": ["a, b", ","]}})), json!(["a", "b"]));
        assert_eq!(ok(json!({"split": ["abc", ";"]})), json!(["abc"]));
        assert_eq!(ok(json!({"split": [["a;b", "c;a"], ";"]})), json!(["a", "b", "c"]));
        assert_eq!(ok(json!({"split": [null, ";"]})), json!(null));
        assert_eq!(ok(json!({"split": [";", ";"]})), json!(null));
        assert_eq!(ok(json!({"join": [{"split": ["c|a|b", "|"]}, "|"]})), json!("a|b|c"));
        assert_eq!(
            eval(json!({"split": [{"attr": "level"}, ";"]})).unwrap_err().kind(),
            "wrong_type"
        );
        assert_eq!(parse_err(json!({"split": ["a", ""]})).path(), "split[1]");
        assert_eq!(parse_err(json!({"join": ["a", {"attr": "sn"}]})).path(), "join[1]");
        assert_eq!(parse_err(json!({"join": ["a"]})).path(), "join");
    }

    // ---------------------------------------------------------------- structure

    #[test]
    fn shape_errors_have_paths() {
        let e = parse_err(json!({"concat": ["a", {"lower": {"shout": "b"}}]}));
        assert_eq!(e.path(), "concat[1].lower");
        assert_eq!(e.message(), "unknown function `shout`");
        assert_eq!(e.to_string(), "at `concat[1].lower`: unknown function `shout`");
        let e = parse_err(json!({"shout": "b"}));
        assert_eq!(e.path(), "");
        assert_eq!(e.to_string(), "unknown function `shout`");
        let e = parse_err(json!({"lower": "a", "upper": "b"}));
        assert!(e.message().contains("exactly one key"), "{e}");
        assert!(parse_err(json!({})).message().contains("empty object"));
        let e = parse_err(json!({"if": [{"and": [true, {"not": {"eq": ["a"]}}]}, 1, 2]}));
        assert_eq!(e.path(), "if[0].and[1].not.eq");
        let e = parse_err(json!({"lookup": {"value": "x", "table": {"k": [{"a": 1}]}}}));
        assert_eq!(e.path(), "lookup.table.k[0]");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut j = json!("x");
        for _ in 0..500 {
            j = json!({ "lower": j });
        }
        let e = Transform::from_json(&j).unwrap_err();
        assert!(e.message().contains("deep"), "{e}");
        let mut j = json!("x");
        for _ in 0..MAX_DEPTH {
            j = json!({ "lower": j });
        }
        assert_eq!(
            Transform::from_json(&j).unwrap().eval(&source(), at(NOW)).unwrap(),
            text("x")
        );
    }

    #[test]
    fn attributes_and_uses_now() {
        let t = Transform::from_json(&json!({"if": [
            {"in": [{"attr": "country"}, ["DE"]]},
            {"lookup": {"value": {"attr": "a"}, "table": {}, "default": {"attr": "b"}}},
            {"concat": [{"attr": "c"}, {"add_days": [{"attr": "d"}, {"attr": "e"}]}, {"substring": [{"attr": "f"}, 0]}]}
        ]}))
        .unwrap();
        assert_eq!(
            t.attributes().into_iter().collect::<Vec<_>>(),
            ["a", "b", "c", "country", "d", "e", "f"]
        );
        assert!(!t.uses_now());
        assert!(
            Transform::from_json(&json!({"days_between": [{"attr": "x"}, {"now": {}}]}))
                .unwrap()
                .uses_now()
        );
        assert!(
            Transform::from_json(&json!({"not": {"or": [false, {"eq": [{"today": {}}, "x"]}]}}))
                .unwrap()
                .uses_now()
        );
        assert!(Transform::from_json(&json!("x")).unwrap().attributes().is_empty());
    }

    fn every_function() -> Json {
        json!({"if": [
            {"and": [
                {"not": {"is_empty": {"attr": "terminationDate"}}},
                {"or": [
                    {"lt": [{"attr": "terminationDate"}, {"today": {}}]},
                    {"gt": [{"add_days": [{"attr": "hireDate"}, -3]}, {"now": {}}]},
                    {"eq": [{"days_between": [{"attr": "hireDate"}, {"today": {}}]}, 61]},
                    {"ne": [{"first": {"attr": "groups"}}, "HR"]},
                    {"in": [{"attr": "country"}, ["FR", "DE", 1, true]]}
                ]}
            ]},
            {"lookup": {"value": {"upper": {"attr": "country"}}, "table": {"DE": "Germany", "X": ["a", "b"], "N": null}, "default": {"trim": " x "}}},
            {"concat": [
                {"lower": {"attr": "givenName"}},
                {"substring": [{"attr": "sn"}, 0, 1]},
                {"substring": [{"attr": "sn"}, 1]},
                {"replace": [{"attr": "mail"}, "@", " at "]},
                {"join": [{"split": ["a;b", ";"]}, "-"]},
                ["lit", 2, false, null],
                "",
                null,
                -5
            ]}
        ]})
    }

    #[test]
    fn json_round_trip() {
        let j = every_function();
        let t = Transform::from_json(&j).unwrap();
        let back = t.to_json();
        let again = Transform::from_json(&back).unwrap();
        assert_eq!(again, t);
        assert_eq!(again.to_json(), back);
        // Literal spellings are normalised: "" is null, lists are sorted sets.
        assert_eq!(
            Transform::from_json(&json!({"concat": ["", ["b", "a"]]}))
                .unwrap()
                .to_json(),
            json!({"concat": [null, ["a", "b"]]})
        );
        // `now` and `today` always write `{}`.
        assert_eq!(
            Transform::from_json(&json!({"today": null})).unwrap().to_json(),
            json!({"today": {}})
        );
        // serde goes through the same spelling
        let text = serde_json::to_string(&t).unwrap();
        let de: Transform = serde_json::from_str(&text).unwrap();
        assert_eq!(de, t);
        let bad: Result<Transform, _> = serde_json::from_str(r#"{"concat": [{"nope": 1}]}"#);
        let msg = bad.unwrap_err().to_string();
        assert!(
            msg.contains("unknown function `nope`") && msg.contains("concat[0]"),
            "{msg}"
        );
        assert_eq!(t.to_string(), serde_json::to_string(&back).unwrap());
    }

    #[test]
    fn every_function_evaluates() {
        let t = Transform::from_json(&every_function()).unwrap();
        assert_eq!(
            t.eval(&source(), at(NOW)).unwrap(),
            // the multi-valued literal gives one text per value
            texts(&[
                "annLee  Ann.Lee at Example.COM a-b2-5",
                "annLee  Ann.Lee at Example.COM a-bfalse-5",
                "annLee  Ann.Lee at Example.COM a-blit-5",
            ])
        );
    }

    #[test]
    fn lifecycle() {
        let t = Transform::from_json(&json!({"if": [
            {"and": [
                {"not": {"is_empty": {"attr": "terminationDate"}}},
                {"lt": [{"attr": "terminationDate"}, {"today": {}}]}
            ]},
            "inactive",
            {"if": [{"gt": [{"attr": "hireDate"}, {"today": {}}]}, "prehire", "active"]}
        ]}))
        .unwrap();
        assert!(t.uses_now());
        assert_eq!(
            t.attributes().into_iter().collect::<Vec<_>>(),
            ["hireDate", "terminationDate"]
        );
        let person = |hire: Value, term: Value| {
            BTreeMap::from([("hireDate".to_owned(), hire), ("terminationDate".to_owned(), term)])
        };
        let leaver = person(date("2024-03-01"), date("2024-06-30"));
        let stayer = person(date("2024-03-01"), Value::Empty);
        let unknown_hire = person(Value::Empty, Value::Empty);
        let state = |p: &BTreeMap<String, Value>, now: &str| t.eval(p, at(now)).unwrap().to_json();
        let cases = [
            ("2024-01-15T09:00:00Z", "prehire", "prehire", "active"),
            ("2024-02-29T23:59:59Z", "prehire", "prehire", "active"),
            ("2024-03-01T00:00:00Z", "active", "active", "active"),
            ("2024-04-10T12:00:00Z", "active", "active", "active"),
            ("2024-06-30T23:59:59Z", "active", "active", "active"),
            ("2024-07-01T00:00:00Z", "inactive", "active", "active"),
            ("2030-01-01T00:00:00Z", "inactive", "active", "active"),
            // now in another zone: today is the UTC date
            ("2024-06-30T22:30:00-02:00", "inactive", "active", "active"),
        ];
        for (now, l, s, u) in cases {
            assert_eq!(state(&leaver, now), json!(l), "leaver at {now}");
            assert_eq!(state(&stayer, now), json!(s), "stayer at {now}");
            assert_eq!(state(&unknown_hire, now), json!(u), "unknown hire at {now}");
        }
        // Text dates (e.g. from a string attribute) behave the same.
        let texty = person(text("2024-03-01"), text("2024-06-30"));
        assert_eq!(state(&texty, "2024-07-01T00:00:00Z"), json!("inactive"));
        assert_eq!(state(&texty, "2024-02-01T00:00:00Z"), json!("prehire"));
        // A missing attribute is an error, not a guess.
        let partial = BTreeMap::from([("hireDate".to_owned(), date("2024-03-01"))]);
        assert_eq!(t.eval(&partial, at(NOW)).unwrap_err().kind(), "unknown_attribute");
    }

    #[test]
    fn errors_describe_themselves() {
        let e = EvalError::WrongType {
            function: "lower".into(),
            expected: "text".into(),
            found: "integer `3`".into(),
        };
        assert_eq!(e.kind(), "wrong_type");
        let e = EvalError::InvalidArgument {
            function: "add_days".into(),
            message: "too far".into(),
        };
        assert_eq!(e.to_string(), "invalid argument to `add_days`: too far");
        assert_eq!(e.kind(), "invalid_argument");
        let many: Vec<String> = (0..8).map(|i| format!("g{i}")).collect();
        let e = eval(json!({"lt": [many, 1]})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`lt` expects a single value, found 8 values [`g0`, `g1`, `g2`, `g3`, `g4`, ...]"
        );
    }

    #[test]
    fn hand_built_transforms_evaluate_and_their_json_is_checked() {
        let multi = |items: &[&str]| Value::Multi(items.iter().map(|s| Scalar::Text((*s).into())).collect());
        // A transform built by hand skips validation: each still evaluates to a defined
        // value, and its JSON form is either refused where validation would refuse the
        // transform (naming the place) or read back to one that evaluates the same.
        let cases: Vec<(Transform, Value, Option<&str>)> = vec![
            (
                Transform::Literal(Value::Multi(Box::default())),
                Value::Multi(Box::default()),
                None,
            ),
            (
                Transform::Replace {
                    value: Box::new(Transform::Literal(text("abc"))),
                    from: String::new(),
                    to: "-".into(),
                },
                text("-a-b-c-"),
                Some("replace[1]"),
            ),
            (
                Transform::Split {
                    value: Box::new(Transform::Literal(text("abc"))),
                    separator: String::new(),
                },
                multi(&["a", "b", "c"]),
                Some("split[1]"),
            ),
            (
                Transform::Concat(vec![
                    Transform::Literal(Value::Multi(Box::default())),
                    Transform::Literal(text("a")),
                ]),
                text("a"),
                None,
            ),
            (
                Transform::Substring {
                    value: Box::new(Transform::Literal(text("abc"))),
                    start: usize::MAX,
                    length: Some(usize::MAX),
                },
                Value::Empty,
                None,
            ),
            (
                Transform::And(Vec::new()),
                Value::Single(Scalar::Boolean(true)),
                Some("and"),
            ),
            (
                Transform::Or(Vec::new()),
                Value::Single(Scalar::Boolean(false)),
                Some("or"),
            ),
            (Transform::Concat(Vec::new()), Value::Empty, Some("concat")),
        ];
        for (t, expected, refused_at) in cases {
            let value = t.eval(&source(), at(NOW)).unwrap();
            assert_eq!(value, expected, "{t:?}");
            match (Transform::from_json(&t.to_json()), refused_at) {
                (Err(e), Some(path)) => assert_eq!(e.path, path, "{t:?}"),
                (Ok(back), None) => {
                    let again = back.eval(&source(), at(NOW)).unwrap();
                    // An empty value set reads back as the empty value.
                    let same =
                        again.same_as(&value, true) || (again.scalars().is_empty() && value.scalars().is_empty());
                    assert!(same, "{t:?}: read back as {back:?} gives {again:?}");
                }
                (other, _) => panic!("{t:?}: its JSON form read back as {other:?}"),
            }
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "attr",
            "lower",
            "upper",
            "trim",
            "concat",
            "substring",
            "replace",
            "lookup",
            "if",
            "eq",
            "ne",
            "in",
            "lt",
            "gt",
            "and",
            "or",
            "not",
            "is_empty",
            "now",
            "today",
            "add_days",
            "days_between",
            "first",
            "join",
            "split",
            "value",
            "table",
            "default",
            "bogus",
        ];

        fn leaf() -> impl Strategy<Value = Json> {
            prop_oneof![
                Just(Json::Null),
                any::<bool>().prop_map(Json::Bool),
                any::<i64>().prop_map(Json::from),
                (-3i64..40).prop_map(Json::from),
                prop::sample::select(vec![
                    "",
                    "a",
                    "A b ",
                    ";",
                    "2024-03-01",
                    "2024-03-01T10:00:00Z",
                    "12",
                    "true",
                    "givenName",
                    "hireDate",
                    "groups",
                    "level",
                    "nope",
                    "日本",
                    "-262143-01-01",
                ])
                .prop_map(|s| Json::String(s.to_owned())),
                Just(json!({})),
            ]
        }

        fn tree() -> impl Strategy<Value = Json> {
            leaf().prop_recursive(6, 64, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(Json::Array),
                    (prop::sample::select(NAMES), inner.clone()).prop_map(|(k, v)| function(k, v)),
                    (prop::sample::select(NAMES), prop::collection::vec(inner.clone(), 0..4))
                        .prop_map(|(k, v)| function(k, Json::Array(v))),
                    prop::collection::btree_map(prop::sample::select(NAMES), inner, 0..4).prop_map(|m| function(
                        "lookup",
                        Json::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
                    )),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn parse_and_eval_never_panic(j in tree(), secs in -10_000_000_000i64..10_000_000_000) {
                if let Ok(t) = Transform::from_json(&j) {
                    let now = DateTime::from_timestamp(secs, 0).unwrap_or_default();
                    let _ = t.eval(&source(), now);
                    let back = Transform::from_json(&t.to_json());
                    prop_assert_eq!(back.as_ref(), Ok(&t));
                    let _ = t.attributes();
                    let _ = t.uses_now();
                }
            }
        }
    }
}
