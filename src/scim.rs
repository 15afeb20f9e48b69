//! SCIM 2.0 requests for outbound plans (feature `scim`, RFC 7643 and RFC 7644).
//!
//! [`render_plan`] turns the ops of an [`OutboundPlan`] into the HTTP requests a host
//! sends to a SCIM service provider; the crate itself sends nothing.
//!
//! * A [`CreateOp`] becomes `POST /Users` with the new resource: every attribute at its
//!   SCIM path, dotted paths (`name.givenName`) as nested objects, value filters
//!   (`emails[type eq "work"].value`) as elements of the multi-valued attribute, and
//!   extension attributes (`urn:…:enterprise:2.0:User:department`) under their schema
//!   URN, which is added to `schemas`.
//! * An [`UpdateOp`] becomes `PATCH /Users/{account}` with one PatchOp message:
//!   `replace` for each value set, `remove` (path only) for each value cleared, one
//!   `add` with a value array per multi-valued attribute that gains values, and for each
//!   value a multi-valued attribute loses, one `remove` whose path selects that value
//!   with a filter, such as `members[value eq "G1"]` (RFC 7644 §3.5.2.2). A removal
//!   never names the bare attribute, which would remove every value; values the engine
//!   does not own stay.
//!
//! * A [`DeleteOp`] (deprovisioning, SPEC 11.3) becomes `DELETE /Users/{account}`
//!   with no body (`body` is JSON `null`). Disabling an account is an ordinary update
//!   of the system's `disable` values: with `"disable": {"active": false}` (or any
//!   account attribute the mapping sends to `active`), it renders as the PATCH
//!   `replace` of `active`.
//!
//! The account key is used as the resource id in PATCH and DELETE paths (percent-encoded). When the
//! service provider's `id` is not the account key, the host rewrites
//! [`ScimRequest::path`] using [`ScimRequest::account`].
//!
//! A `replace` whose path has a value filter (`emails[type eq "work"].value`) fails with
//! `noTarget` at a provider where no element matches (RFC 7644 §3.5.2.3); accounts the
//! engine provisioned carry the element from their creation.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::config::SystemConfig;
#[cfg(doc)]
use crate::outbound::DeleteOp;
use crate::outbound::{CreateOp, Op, OutboundPlan, UpdateOp};
use crate::value::{Scalar, Value};

/// The schema URN of a PATCH request body.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The core User schema URN.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema URN.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension schema URN.
pub const ENTERPRISE_USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// One HTTP request to a SCIM service provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ScimRequest {
    /// `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The request path relative to the service's base URL: `/Users/{id}` or `/Users`.
    pub path: String,
    /// The JSON request body (`null` for `DELETE`).
    pub body: Json,
    /// The account key of the op the request carries out.
    pub account: String,
}

/// Where one account attribute lives in a SCIM resource.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    path: String,
    /// A multi-valued attribute of plain values rather than of complex values with a
    /// `value` sub-attribute.
    simple: bool,
}

/// How account attributes map to SCIM attribute paths, and which endpoint and schemas
/// the resources use. An attribute without an entry is sent under its own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimMapping {
    endpoint: String,
    schemas: Vec<String>,
    targets: BTreeMap<String, Target>,
}

/// The default paths of [`ScimMapping::core_user`]: (account attribute, SCIM path).
const CORE_USER: &[(&str, &str)] = &[
    ("userName", "userName"),
    ("displayName", "displayName"),
    ("nickName", "nickName"),
    ("title", "title"),
    ("userType", "userType"),
    ("preferredLanguage", "preferredLanguage"),
    ("locale", "locale"),
    ("timezone", "timezone"),
    ("active", "active"),
    ("externalId", "externalId"),
    ("formattedName", "name.formatted"),
    ("givenName", "name.givenName"),
    ("familyName", "name.familyName"),
    ("sn", "name.familyName"),
    ("middleName", "name.middleName"),
    ("honorificPrefix", "name.honorificPrefix"),
    ("honorificSuffix", "name.honorificSuffix"),
    ("mail", "emails[type eq \"work\"].value"),
    ("email", "emails[type eq \"work\"].value"),
    ("emails", "emails"),
    ("telephoneNumber", "phoneNumbers[type eq \"work\"].value"),
    ("mobile", "phoneNumbers[type eq \"mobile\"].value"),
    ("phoneNumbers", "phoneNumbers"),
    ("memberOf", "groups"),
    ("groups", "groups"),
    ("entitlements", "entitlements"),
    ("roles", "roles"),
    (
        "employeeNumber",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    ),
    (
        "department",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    ),
    (
        "organization",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
    ),
    (
        "costCenter",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:costCenter",
    ),
    (
        "manager",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
    ),
];

impl ScimMapping {
    /// An empty mapping for resources at `endpoint` (e.g. `/Users`) of the core schema
    /// `schema`: every attribute is sent under its own name.
    pub fn new(endpoint: impl Into<String>, schema: impl Into<String>) -> ScimMapping {
        ScimMapping {
            endpoint: endpoint.into(),
            schemas: vec![schema.into()],
            targets: BTreeMap::new(),
        }
    }

    /// Users at `/Users`, with paths for common attribute names: `userName`,
    /// `displayName`, `title`, `active`, `externalId`, `givenName` and `familyName` (and
    /// `sn`) as `name.givenName` and `name.familyName`, `mail` as the work email
    /// (`emails[type eq "work"].value`), `telephoneNumber` and `mobile` as phone numbers,
    /// `emails`, `phoneNumbers`, `memberOf` and `groups` as `groups`, and the enterprise
    /// extension's `employeeNumber`, `department`, `organization`, `costCenter` and
    /// `manager` (its `value`).
    ///
    /// `groups` is read-only at most providers (memberships are changed on the group);
    /// map group memberships to a group's `members` with [`ScimMapping::core_group`].
    pub fn core_user() -> ScimMapping {
        let mut mapping = ScimMapping::new("/Users", USER_SCHEMA);
        for (attribute, path) in CORE_USER {
            mapping = mapping.map(*attribute, *path);
        }
        mapping
    }

    /// Groups at `/Groups`, with `displayName`, `members` and `externalId`.
    pub fn core_group() -> ScimMapping {
        ScimMapping::new("/Groups", GROUP_SCHEMA)
            .map("displayName", "displayName")
            .map("members", "members")
            .map("externalId", "externalId")
    }

    /// The mapping for a system's account schema: each schema attribute at the path
    /// this mapping gives it, or else at the path [`ScimMapping::core_user`] gives an
    /// attribute of the same name ignoring case, or else under its own name. Entries for
    /// attributes the schema lacks are dropped.
    pub fn for_system(&self, system: &SystemConfig) -> ScimMapping {
        let mut out = ScimMapping {
            endpoint: self.endpoint.clone(),
            schemas: self.schemas.clone(),
            targets: BTreeMap::new(),
        };
        for name in system.schema.attributes.keys() {
            let target = self.targets.get(name.as_str()).cloned().unwrap_or_else(|| {
                let path = CORE_USER
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(name))
                    .map_or(name.as_str(), |(_, p)| p);
                Target {
                    path: path.to_owned(),
                    simple: false,
                }
            });
            out.targets.insert(name.clone().into(), target);
        }
        out
    }

    /// Maps an account attribute to a SCIM attribute path. A multi-valued attribute is
    /// taken to hold complex values whose `value` sub-attribute carries the account's
    /// value (as `emails`, `groups` and `members` do).
    #[must_use]
    pub fn map(mut self, attribute: impl Into<String>, path: impl Into<String>) -> ScimMapping {
        self.targets.insert(
            attribute.into(),
            Target {
                path: path.into(),
                simple: false,
            },
        );
        self
    }

    /// Maps a multi-valued account attribute to a SCIM attribute of plain values (an
    /// array of strings, as some extension schemas declare).
    #[must_use]
    pub fn map_simple(mut self, attribute: impl Into<String>, path: impl Into<String>) -> ScimMapping {
        self.targets.insert(
            attribute.into(),
            Target {
                path: path.into(),
                simple: true,
            },
        );
        self
    }

    /// The resource endpoint, e.g. `/Users`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The SCIM path of an account attribute (its own name when it has no entry).
    pub fn path<'a>(&'a self, attribute: &'a str) -> &'a str {
        self.targets.get(attribute).map_or(attribute, |t| t.path.as_str())
    }

    fn target(&self, attribute: &str) -> Target {
        self.targets.get(attribute).cloned().unwrap_or_else(|| Target {
            path: attribute.to_owned(),
            simple: false,
        })
    }
}

impl Default for ScimMapping {
    /// [`ScimMapping::core_user`].
    fn default() -> ScimMapping {
        ScimMapping::core_user()
    }
}

/// The requests that carry out a plan's ops, in order. A blocked plan renders to
/// nothing: its ops must not be carried out until it is approved.
pub fn render_plan(plan: &OutboundPlan, mapping: &ScimMapping) -> Vec<ScimRequest> {
    if plan.is_blocked() {
        return Vec::new();
    }
    plan.ops.iter().map(|op| render_op(op, mapping)).collect()
}

/// The request that carries out one op.
pub fn render_op(op: &Op, mapping: &ScimMapping) -> ScimRequest {
    match op {
        Op::Create(c) => render_create(c, mapping),
        Op::Update(u) => render_update(u, mapping),
        Op::Delete(d) => ScimRequest {
            method: "DELETE",
            path: format!("{}/{}", mapping.endpoint, encode_segment(&d.account)),
            body: Json::Null,
            account: d.account.clone(),
        },
    }
}

/// A SCIM attribute path taken apart: `urn:…:attr[filter].sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedPath<'a> {
    urn: Option<&'a str>,
    attr: &'a str,
    filter: Option<&'a str>,
    sub: Option<&'a str>,
}

impl<'a> ParsedPath<'a> {
    fn parse(path: &'a str) -> ParsedPath<'a> {
        let bracket = path.find('[');
        let head = bracket.map_or(path, |b| path.get(..b).unwrap_or(path));
        let (urn, head_start) = if path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
            match head.rfind(':') {
                Some(colon) => (path.get(..colon), colon + 1),
                None => (None, 0),
            }
        } else {
            (None, 0)
        };
        let head = head.get(head_start..).unwrap_or(head);
        match bracket {
            Some(b) => {
                let close = path.rfind(']').filter(|c| *c > b);
                let filter = close.and_then(|c| path.get(b + 1..c));
                let sub = close
                    .and_then(|c| path.get(c + 1..))
                    .and_then(|rest| rest.strip_prefix('.'))
                    .filter(|s| !s.is_empty());
                ParsedPath {
                    urn,
                    attr: head,
                    filter,
                    sub,
                }
            }
            None => match head.split_once('.') {
                Some((attr, sub)) => ParsedPath {
                    urn,
                    attr,
                    filter: None,
                    sub: Some(sub),
                },
                None => ParsedPath {
                    urn,
                    attr: head,
                    filter: None,
                    sub: None,
                },
            },
        }
    }

    /// `urn:…:attr` or `attr`.
    fn attribute_path(&self) -> String {
        match self.urn {
            Some(urn) => format!("{urn}:{}", self.attr),
            None => self.attr.to_owned(),
        }
    }

    /// The sub-attribute carrying a multi-valued attribute's value.
    fn value_key(&self) -> &'a str {
        self.sub.unwrap_or("value")
    }
}

/// A filter value: its JSON literal (strings quoted, with `"` and `\` escaped).
fn literal(value: &Scalar) -> String {
    value.to_json().to_string()
}

/// The `name eq literal` terms of a filter joined by `and`; `None` for any other filter.
fn filter_fields(filter: &str) -> Option<Vec<(String, Json)>> {
    let mut fields = Vec::new();
    let mut rest = filter.trim();
    loop {
        let (name, after) = rest.split_once(char::is_whitespace)?;
        let after = after.trim_start();
        let after = after
            .get(..2)
            .filter(|op| op.eq_ignore_ascii_case("eq"))
            .and_then(|_| after.get(2..))?;
        let after = after.trim_start();
        let mut stream = serde_json::Deserializer::from_str(after).into_iter::<Json>();
        let value = stream.next()?.ok()?;
        if value.is_object() || value.is_array() {
            return None;
        }
        fields.push((name.to_owned(), value));
        rest = after.get(stream.byte_offset()..)?.trim_start();
        if rest.is_empty() {
            return Some(fields);
        }
        let (and, next) = rest.split_once(char::is_whitespace)?;
        if !and.eq_ignore_ascii_case("and") {
            return None;
        }
        rest = next.trim_start();
    }
}

/// The element of a multi-valued attribute that carries `value` at `path`: the
/// filter's fields plus the value sub-attribute.
fn element(path: &ParsedPath<'_>, value: &Scalar) -> Json {
    let mut object = Map::new();
    if let Some(fields) = path.filter.and_then(filter_fields) {
        object.extend(fields);
    }
    object.insert(path.value_key().to_owned(), value.to_json());
    Json::Object(object)
}

/// The values added to a multi-valued attribute, as its elements.
fn elements(path: &ParsedPath<'_>, target: &Target, values: &[Scalar]) -> Vec<Json> {
    if target.simple && path.filter.is_none() && path.sub.is_none() {
        values.iter().map(Scalar::to_json).collect()
    } else {
        values.iter().map(|v| element(path, v)).collect()
    }
}

/// The path that selects one value of a multi-valued attribute.
fn value_filter_path(path: &ParsedPath<'_>, value: &Scalar) -> String {
    let term = format!("{} eq {}", path.value_key(), literal(value));
    match path.filter {
        Some(filter) => format!("{}[{filter} and {term}]", path.attribute_path()),
        None => format!("{}[{term}]", path.attribute_path()),
    }
}

/// The path a cleared value removes: a trailing `.value` removes the complex value or
/// element it belongs to (a complex value without its `value` means nothing).
fn clear_path(target: &Target) -> String {
    let parsed = ParsedPath::parse(&target.path);
    if parsed.sub == Some("value") {
        match parsed.filter {
            Some(filter) => format!("{}[{filter}]", parsed.attribute_path()),
            None => parsed.attribute_path(),
        }
    } else {
        target.path.clone()
    }
}

fn patch_op(op: &str, path: String, value: Option<Json>) -> Json {
    let mut object = Map::new();
    object.insert("op".to_owned(), Json::String(op.to_owned()));
    object.insert("path".to_owned(), Json::String(path));
    if let Some(value) = value {
        object.insert("value".to_owned(), value);
    }
    Json::Object(object)
}

fn render_update(op: &UpdateOp, mapping: &ScimMapping) -> ScimRequest {
    let mut operations = Vec::new();
    for (attribute, value) in &op.set {
        let target = mapping.target(attribute);
        match value {
            Value::Empty => operations.push(patch_op("remove", clear_path(&target), None)),
            Value::Single(s) => operations.push(patch_op("replace", target.path.clone(), Some(s.to_json()))),
            Value::Multi(items) => {
                let parsed = ParsedPath::parse(&target.path);
                let items = elements(&parsed, &target, items);
                operations.push(patch_op("replace", target.path.clone(), Some(Json::Array(items))));
            }
        }
    }
    for (attribute, values) in &op.add {
        if values.is_empty() {
            continue;
        }
        let target = mapping.target(attribute);
        let parsed = ParsedPath::parse(&target.path);
        let items = elements(&parsed, &target, values);
        operations.push(patch_op("add", parsed.attribute_path(), Some(Json::Array(items))));
    }
    for (attribute, values) in &op.remove {
        let target = mapping.target(attribute);
        let parsed = ParsedPath::parse(&target.path);
        for value in values {
            operations.push(patch_op("remove", value_filter_path(&parsed, value), None));
        }
    }
    let mut body = Map::new();
    body.insert(
        "schemas".to_owned(),
        Json::Array(vec![Json::String(PATCH_OP.to_owned())]),
    );
    body.insert("Operations".to_owned(), Json::Array(operations));
    ScimRequest {
        method: "PATCH",
        path: format!("{}/{}", mapping.endpoint, encode_segment(&op.account)),
        body: Json::Object(body),
        account: op.account.clone(),
    }
}

fn render_create(op: &CreateOp, mapping: &ScimMapping) -> ScimRequest {
    let mut schemas: Vec<String> = mapping.schemas.clone();
    let mut body = Map::new();
    for (attribute, value) in &op.attributes {
        if value.is_empty() {
            continue;
        }
        let target = mapping.target(attribute);
        let parsed = ParsedPath::parse(&target.path);
        let container = match parsed.urn {
            Some(urn) => {
                if !schemas.iter().any(|s| s.eq_ignore_ascii_case(urn)) {
                    schemas.push(urn.to_owned());
                }
                match object_at(&mut body, urn) {
                    Some(object) => object,
                    None => continue,
                }
            }
            None => &mut body,
        };
        place(container, &parsed, &target, value);
    }
    let mut out = Map::new();
    out.insert(
        "schemas".to_owned(),
        Json::Array(schemas.into_iter().map(Json::String).collect()),
    );
    out.extend(body);
    ScimRequest {
        method: "POST",
        path: mapping.endpoint.clone(),
        body: Json::Object(out),
        account: op.account.clone(),
    }
}

/// The object under `key`, created (or replacing a non-object) as needed.
fn object_at<'m>(map: &'m mut Map<String, Json>, key: &str) -> Option<&'m mut Map<String, Json>> {
    let slot = map.entry(key.to_owned()).or_insert_with(|| Json::Object(Map::new()));
    if !slot.is_object() {
        *slot = Json::Object(Map::new());
    }
    slot.as_object_mut()
}

/// The array under `key`, created (or replacing a non-array) as needed.
fn array_at<'m>(map: &'m mut Map<String, Json>, key: &str) -> Option<&'m mut Vec<Json>> {
    let slot = map.entry(key.to_owned()).or_insert_with(|| Json::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Json::Array(Vec::new());
    }
    slot.as_array_mut()
}

/// Puts one attribute value into a POST body (or an extension's object in it).
fn place(container: &mut Map<String, Json>, path: &ParsedPath<'_>, target: &Target, value: &Value) {
    let scalars = value.scalars();
    match (path.filter, path.sub, value) {
        // `attr`: a plain value, or the elements of a multi-valued attribute.
        (None, None, Value::Single(s)) => {
            container.insert(path.attr.to_owned(), s.to_json());
        }
        (None, None, _) => {
            if let Some(items) = array_at(container, path.attr) {
                items.extend(elements(path, target, scalars));
            }
        }
        // `attr.sub` of a single complex attribute (`name.givenName`).
        (None, Some(sub), Value::Single(s)) => {
            if let Some(object) = object_at(container, path.attr) {
                object.insert(sub.to_owned(), s.to_json());
            }
        }
        // `attr[filter].sub`: the element the filter selects, created or completed.
        (Some(_), _, Value::Single(s)) => {
            let fields = path.filter.and_then(filter_fields).unwrap_or_default();
            let Some(items) = array_at(container, path.attr) else {
                return;
            };
            let found = items.iter_mut().find(|item| {
                !fields.is_empty() && fields.iter().all(|(k, v)| item.get(k).is_some_and(|held| held == v))
            });
            match found {
                Some(Json::Object(object)) => {
                    object.insert(path.value_key().to_owned(), s.to_json());
                }
                _ => items.push(element(path, s)),
            }
        }
        // Several values under a filter or a sub-attribute: one element each.
        (_, _, _) => {
            if let Some(items) = array_at(container, path.attr) {
                items.extend(scalars.iter().map(|s| element(path, s)));
            }
        }
    }
}

/// Percent-encodes a path segment: everything but unreserved characters, `@` and `:`.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdentityId;
    use crate::thresholds::{Base, Counts, Exceeded};
    use serde_json::json;

    const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
    const GROUP: &str = "acbf3ae7-8463-4692-b4fd-9b4da3f908ce";

    fn text(s: &str) -> Scalar {
        Scalar::Text(s.to_owned().into())
    }

    fn update(account: &str) -> UpdateOp {
        UpdateOp {
            system: "scim".into(),
            account: account.into(),
            identity: IdentityId::from_raw(1),
            set: crate::AttrMap::new(),
            add: crate::AttrMap::new(),
            remove: crate::AttrMap::new(),
        }
    }

    fn patch(operations: Json) -> Json {
        json!({"schemas": [PATCH_OP], "Operations": operations})
    }

    #[test]
    fn rfc7644_add_a_member() {
        // RFC 7644 §3.5.2.1. The RFC's value also carries `display` and `$ref`, both
        // optional (RFC 7643 §4.2); the engine knows only the member's `value`.
        let mut rfc: Json = serde_json::from_str(
            r#"{ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations":[
                   { "op":"add",
                     "path":"members",
                     "value":[
                      { "display": "Babs Jensen",
                        "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
                        "value": "2819c223-7f76-453a-919d-413861904646" } ] } ] }"#,
        )
        .unwrap();
        let member = &mut rfc["Operations"][0]["value"][0];
        member.as_object_mut().unwrap().retain(|k, _| k == "value");

        let mut op = update(GROUP);
        op.add.insert("members".into(), vec![text(BABS)]);
        let request = render_op(&Op::Update(op), &ScimMapping::core_group());
        assert_eq!(request.method, "PATCH");
        assert_eq!(request.path, format!("/Groups/{GROUP}"));
        assert_eq!(request.body, rfc);
    }

    #[test]
    fn rfc7644_remove_a_single_member() {
        // RFC 7644 §3.5.2.2, exactly.
        let rfc: Json = serde_json::from_str(
            r#"{ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations":[{
                   "op":"remove",
                   "path":"members[value eq \"2819c223-7f76-453a-919d-413861904646\"]" }] }"#,
        )
        .unwrap();
        let mut op = update(GROUP);
        op.remove.insert("members".into(), vec![text(BABS)]);
        let request = render_op(&Op::Update(op), &ScimMapping::core_group());
        assert_eq!(request.body, rfc);
        assert_eq!(
            serde_json::to_string(&request.body).unwrap(),
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"members[value eq \"2819c223-7f76-453a-919d-413861904646\"]"}]}"#
        );
    }

    #[test]
    fn rfc7644_replace_a_sub_attribute_of_a_filtered_element() {
        // RFC 7644 §3.5.2.3, exactly.
        let rfc: Json = serde_json::from_str(
            r#"{ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                 "Operations": [{
                   "op":"replace",
                   "path":"addresses[type eq \"work\"].streetAddress",
                   "value":"1010 Broadway Ave" }] }"#,
        )
        .unwrap();
        let mut op = update("2819c223-7f76-453a-919d-413861904646");
        op.set.insert("street".into(), Value::Single(text("1010 Broadway Ave")));
        let mapping = ScimMapping::core_user().map("street", "addresses[type eq \"work\"].streetAddress");
        let request = render_op(&Op::Update(op), &mapping);
        assert_eq!(request.path, format!("/Users/{BABS}"));
        assert_eq!(request.body, rfc);
    }

    #[test]
    fn removals_name_each_value_and_never_the_whole_attribute() {
        let mut op = update("bjensen");
        op.remove
            .insert("memberOf".into(), vec![text("G1"), text("say \"hi\" \\ bye")]);
        op.remove.insert("emails".into(), vec![text("a@b")]);
        op.remove.insert("codes".into(), vec![Scalar::Integer(7)]);
        op.remove.insert("mobile".into(), vec![text("+1 555")]);
        let mapping = ScimMapping::core_user().map_simple("codes", "urn:example:params:scim:schemas:Ext:codes");
        let request = render_op(&Op::Update(op), &mapping);
        assert_eq!(
            request.body,
            patch(json!([
                {"op": "remove", "path": "urn:example:params:scim:schemas:Ext:codes[value eq 7]"},
                {"op": "remove", "path": "emails[value eq \"a@b\"]"},
                {"op": "remove", "path": "groups[value eq \"G1\"]"},
                {"op": "remove", "path": "groups[value eq \"say \\\"hi\\\" \\\\ bye\"]"},
                {"op": "remove", "path": "phoneNumbers[type eq \"mobile\" and value eq \"+1 555\"]"},
            ]))
        );
        let paths: Vec<&str> = request.body["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["path"].as_str().unwrap())
            .collect();
        assert!(paths.iter().all(|p| p.ends_with(']')), "{paths:?}");
        assert_eq!(paths[3], r#"groups[value eq "say \"hi\" \\ bye"]"#);
    }

    #[test]
    fn sets_replace_or_remove_and_adds_carry_value_arrays() {
        let mut op = update("bj ensen/1");
        op.set.insert("givenName".into(), Value::Single(text("Barbara")));
        op.set.insert("title".into(), Value::Empty);
        op.set.insert("mail".into(), Value::Empty);
        op.set.insert("manager".into(), Value::Empty);
        op.set.insert("active".into(), Value::Single(Scalar::Boolean(false)));
        op.set
            .insert("telephoneNumber".into(), Value::Single(text("+1 555 0100")));
        op.add.insert("emails".into(), vec![text("a@b"), text("c@d")]);
        op.add.insert("mobile".into(), vec![text("+1 555")]);
        op.add.insert("tags".into(), vec![text("x")]);
        let mapping = ScimMapping::core_user().map_simple("tags", "tags");
        let request = render_op(&Op::Update(op), &mapping);
        assert_eq!(request.path, "/Users/bj%20ensen%2F1");
        assert_eq!(request.account, "bj ensen/1");
        assert_eq!(
            request.body,
            patch(json!([
                {"op": "replace", "path": "active", "value": false},
                {"op": "replace", "path": "name.givenName", "value": "Barbara"},
                {"op": "remove", "path": "emails[type eq \"work\"]"},
                {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager"},
                {"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 555 0100"},
                {"op": "remove", "path": "title"},
                {"op": "add", "path": "emails", "value": [{"value": "a@b"}, {"value": "c@d"}]},
                {"op": "add", "path": "phoneNumbers", "value": [{"type": "mobile", "value": "+1 555"}]},
                {"op": "add", "path": "tags", "value": ["x"]},
            ]))
        );
    }

    #[test]
    fn rfc7644_create_a_user() {
        // RFC 7644 §3.3.
        let rfc: Json = serde_json::from_str(
            r#"{ "schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
                 "userName":"bjensen",
                 "externalId":"bjensen",
                 "name":{ "formatted":"Ms. Barbara J Jensen III", "familyName":"Jensen", "givenName":"Barbara" } }"#,
        )
        .unwrap();
        let attributes: crate::AttrMap<Value> = [
            ("userName", "bjensen"),
            ("externalId", "bjensen"),
            ("formattedName", "Ms. Barbara J Jensen III"),
            ("familyName", "Jensen"),
            ("givenName", "Barbara"),
        ]
        .into_iter()
        .map(|(k, v)| (crate::Text::from(k), Value::Single(text(v))))
        .collect();
        let op = Op::Create(CreateOp {
            system: "scim".into(),
            identity: IdentityId::from_raw(1),
            account: "bjensen".into(),
            attributes,
        });
        let request = render_op(&op, &ScimMapping::core_user());
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/Users");
        assert_eq!(request.body, rfc);
    }

    #[test]
    fn create_bodies_nest_paths_filters_and_extensions() {
        let mut attributes = crate::AttrMap::new();
        attributes.insert("userName".into(), Value::Single(text("bjensen")));
        attributes.insert("mail".into(), Value::Single(text("bjensen@example.com")));
        attributes.insert("mailPrimary".into(), Value::Single(Scalar::Boolean(true)));
        attributes.insert("mobile".into(), Value::Single(text("+1 555")));
        attributes.insert("memberOf".into(), Value::Multi(vec![text("G1"), text("G2")].into()));
        attributes.insert("department".into(), Value::Single(text("Tour Operations")));
        attributes.insert("manager".into(), Value::Single(text("26118915")));
        attributes.insert("title".into(), Value::Empty);
        let op = Op::Create(CreateOp {
            system: "scim".into(),
            identity: IdentityId::from_raw(1),
            account: "bjensen".into(),
            attributes,
        });
        let mapping = ScimMapping::core_user().map("mailPrimary", "emails[type eq \"work\"].primary");
        let request = render_op(&op, &mapping);
        assert_eq!(
            request.body,
            json!({
                "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                    "department": "Tour Operations",
                    "manager": {"value": "26118915"}
                },
                "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
                "groups": [{"value": "G1"}, {"value": "G2"}],
                "phoneNumbers": [{"type": "mobile", "value": "+1 555"}],
                "userName": "bjensen"
            })
        );
    }

    #[test]
    fn paths_parse() {
        let p = ParsedPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
        assert_eq!(p.urn, Some(ENTERPRISE_USER_SCHEMA));
        assert_eq!((p.attr, p.filter, p.sub), ("manager", None, Some("value")));
        let p = ParsedPath::parse(r#"emails[type eq "a:b]"].value"#);
        assert_eq!(
            (p.urn, p.attr, p.filter, p.sub),
            (None, "emails", Some(r#"type eq "a:b]""#), Some("value"))
        );
        assert_eq!(
            filter_fields(r#"type eq "work" AND primary eq true"#),
            Some(vec![("type".into(), json!("work")), ("primary".into(), json!(true))])
        );
        assert_eq!(filter_fields(r#"type co "w""#), None);
    }

    #[test]
    fn mappings_for_a_system_schema() {
        let config = crate::validate::ValidatedConfig::from_json(
            &json!({
                "identity": {"attributes": {"n": {"type": "string"}}},
                "systems": {"app": {"schema": {"account_id": "login", "account_name": "login", "attributes": {
                    "login": {"type": "string"}, "GivenName": {"type": "string"}, "mail": {"type": "string"},
                    "badge": {"type": "string"}}}}}
            })
            .to_string(),
        )
        .unwrap();
        let mapping = ScimMapping::core_user()
            .map("login", "userName")
            .for_system(config.system("app").unwrap());
        assert_eq!(mapping.path("login"), "userName");
        assert_eq!(mapping.path("GivenName"), "name.givenName");
        assert_eq!(mapping.path("mail"), r#"emails[type eq "work"].value"#);
        assert_eq!(mapping.path("badge"), "badge");
        assert_eq!(mapping.endpoint(), "/Users");
        assert_eq!(mapping.targets.len(), 4);
    }

    #[test]
    fn deletes_are_delete_requests_and_disabling_patches_active() {
        let delete = Op::Delete(crate::outbound::DeleteOp {
            system: "scim".into(),
            account: "bjensen@example.com".into(),
            identity: IdentityId::from_raw(1),
        });
        let request = render_op(&delete, &ScimMapping::core_user());
        assert_eq!(request.method, "DELETE");
        assert_eq!(request.path, "/Users/bjensen@example.com");
        assert_eq!(request.body, Json::Null);
        // A system disabling through an attribute the mapping sends to `active`.
        let mut op = update("bjensen");
        op.set.insert("enabled".into(), Value::Single(Scalar::Boolean(false)));
        let mapping = ScimMapping::core_user().map("enabled", "active");
        let request = render_op(&Op::Update(op), &mapping);
        assert_eq!(request.method, "PATCH");
        assert_eq!(
            request.body,
            patch(json!([{"op": "replace", "path": "active", "value": false}]))
        );
    }

    #[test]
    fn blocked_plans_render_nothing() {
        let mut op = update("u1");
        op.set.insert("title".into(), Value::Single(text("Boss")));
        // Built from JSON so that fields added to the plan later keep their defaults.
        let mut plan: OutboundPlan = serde_json::from_value(json!({
            "id": 1, "system": "scim", "at": "2026-03-01T00:00:00Z", "ops": [Op::Update(op)],
            "skipped": [], "counts": Counts::default(), "base": Base::default(), "exceeded": []
        }))
        .unwrap();
        assert_eq!(render_plan(&plan, &ScimMapping::core_user()).len(), 1);
        plan.exceeded.push(Exceeded {
            threshold: "max_updated".into(),
            count: 1,
            limit: 0.0,
            percent: None,
            base: None,
        });
        assert!(render_plan(&plan, &ScimMapping::core_user()).is_empty());
    }
}
