//! Configuration validation (SPEC 2.1): every problem at once, each with its place and
//! kind, and a "did you mean" hint where a name is close to a declared one.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, Direction, SystemConfig, MAX_DELETE_AFTER_DAYS};
use crate::error::ConfigError;
use crate::text::Text;
use crate::transform::{InputSize, Transform, MAX_OUTPUT_BYTES};
use crate::value::{Scalar, Value, ValueType};

/// What kind of problem a validation error is. The `snake_case` name (see
/// [`ValidationErrorKind::as_str`]) is what scenario files and reports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// An `account_id` / `account_name` attribute missing from the schema or multi-valued.
    InvalidKeyAttribute,
    /// A boolean attribute marked `entitlement`.
    BooleanEntitlement,
    /// A rule or declaration naming an attribute that is not declared.
    UnknownAttribute,
    /// A score outside `0..=100`.
    ScoreOutOfRange,
    /// A `reference` identity attribute without `match`.
    MissingMatch,
    /// A correlation rule with no attribute pair.
    EmptyRule,
    /// Two enabled rules that write the same account attribute outbound.
    ConflictingOutbound,
    /// A percentage threshold that is negative or not a number.
    InvalidThreshold,
    /// Computed attributes whose inputs form a cycle.
    ComputedCycle,
    /// A role granting on a system that is not configured.
    UnknownSystem,
    /// A role granting on an attribute that is not multi-valued.
    GrantNotMulti,
    /// A role granting on a multi-valued attribute not marked `entitlement` (SPEC 7.3).
    GrantNotEntitlement,
    /// A role granting a value that does not parse as the attribute's type.
    InvalidGrantValue,
    /// A system named with the `@` prefix, which provenance reserves for the host's
    /// edits (`@host`) and computed attributes (`@computed`).
    ReservedSystemName,
    /// A `delete_after_days` that is negative, fractional or past
    /// [`crate::config::MAX_DELETE_AFTER_DAYS`].
    InvalidDeleteAfter,
    /// A `disable` / `enable` value that does not fit its account attribute (wrong
    /// type, a multi-valued attribute, or the key attribute).
    InvalidDeprovisioningValue,
    /// A transform whose worst case on ordinary inputs (1 KiB per single value, 1,000
    /// values of 256 bytes per multi value) passes the evaluation budget of
    /// [`crate::transform::MAX_OUTPUT_BYTES`]: nested `replace`s that grow their input
    /// tenfold, say.
    TransformTooLarge,
    /// A flow without a transform between attributes whose types no value converts
    /// between (an `integer` into a `boolean`, a `date` into an `integer`, ...): every
    /// value it carries would be refused.
    TypeMismatch,
}

impl ValidationErrorKind {
    /// The stable `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationErrorKind::InvalidKeyAttribute => "invalid_key_attribute",
            ValidationErrorKind::BooleanEntitlement => "boolean_entitlement",
            ValidationErrorKind::UnknownAttribute => "unknown_attribute",
            ValidationErrorKind::ScoreOutOfRange => "score_out_of_range",
            ValidationErrorKind::MissingMatch => "missing_match",
            ValidationErrorKind::EmptyRule => "empty_rule",
            ValidationErrorKind::ConflictingOutbound => "conflicting_outbound",
            ValidationErrorKind::InvalidThreshold => "invalid_threshold",
            ValidationErrorKind::ComputedCycle => "computed_cycle",
            ValidationErrorKind::UnknownSystem => "unknown_system",
            ValidationErrorKind::GrantNotMulti => "grant_not_multi",
            ValidationErrorKind::GrantNotEntitlement => "grant_not_entitlement",
            ValidationErrorKind::InvalidGrantValue => "invalid_grant_value",
            ValidationErrorKind::ReservedSystemName => "reserved_system_name",
            ValidationErrorKind::InvalidDeleteAfter => "invalid_delete_after",
            ValidationErrorKind::InvalidDeprovisioningValue => "invalid_deprovisioning_value",
            ValidationErrorKind::TransformTooLarge => "transform_too_large",
            ValidationErrorKind::TypeMismatch => "type_mismatch",
        }
    }
}

/// Where in the configuration a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Place {
    /// The system, if the problem is inside one.
    pub system: Option<String>,
    /// The rule, e.g. `flows[2]` or `correlation[0]`.
    pub rule: Option<String>,
    /// The attribute concerned.
    pub attribute: Option<String>,
    /// The JSON path of the offending field, e.g. `systems.hr.flows[2].account`.
    pub path: String,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationError {
    kind: ValidationErrorKind,
    place: Place,
    message: String,
    hint: Option<String>,
}

impl ValidationError {
    /// The kind of problem.
    pub fn kind(&self) -> ValidationErrorKind {
        self.kind
    }
    /// Where it is.
    pub fn place(&self) -> &Place {
        &self.place
    }
    /// What is wrong, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// A suggestion, e.g. the declared name closest to a misspelt one.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.place, self.message, self.kind.as_str())?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one configuration, in document order.
///
/// `Debug` prints the same list as `Display` (a `main` returning
/// `Result<(), Box<dyn Error>>` prints its error with `Debug`); `{:#?}` shows the
/// structure.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl fmt::Debug for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            f.debug_tuple("ValidationErrors").field(&self.0).finish()
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the configuration has {} problem(s):", self.0.len())?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// A configuration that passed validation: the only form the engine accepts. Cheap to
/// clone (shared).
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    inner: Arc<Config>,
}

impl ValidatedConfig {
    /// Parses JSON text and validates it.
    pub fn from_json(text: &str) -> Result<ValidatedConfig, ConfigError> {
        let config: Config = serde_json::from_str(text).map_err(ConfigError::from_json)?;
        config.validate().map_err(ConfigError::Invalid)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner
    }

    /// A system's configuration.
    pub fn system(&self, name: &str) -> Option<&SystemConfig> {
        self.inner.systems.get(name)
    }
}

impl std::ops::Deref for ValidatedConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.inner
    }
}

impl Config {
    /// Checks the configuration and returns it validated, or every problem found.
    pub fn validate(self) -> Result<ValidatedConfig, ValidationErrors> {
        let errors = Checker::default().run(&self);
        if errors.is_empty() {
            Ok(ValidatedConfig { inner: Arc::new(self) })
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

#[derive(Default)]
struct Checker {
    errors: Vec<ValidationError>,
}

impl Checker {
    fn push(&mut self, kind: ValidationErrorKind, place: Place, message: String, hint: Option<String>) {
        self.errors.push(ValidationError {
            kind,
            place,
            message,
            hint,
        });
    }

    /// Refuses a transform whose worst case passes the evaluation budget, so the
    /// refusal comes with the configuration and not on the first identity evaluated.
    fn transform_budget(&mut self, t: &Transform, multi: &dyn Fn(&str) -> bool, place: Place) {
        let input = |name: &str| {
            if multi(name) {
                InputSize::MULTI
            } else {
                InputSize::SINGLE
            }
        };
        let worst = t.worst_case_bytes(&input);
        if worst > MAX_OUTPUT_BYTES as u128 {
            self.push(
                ValidationErrorKind::TransformTooLarge,
                place,
                format!(
                    "the transform could produce {} bytes of text from attribute values of 1024 bytes, past the budget of {MAX_OUTPUT_BYTES} bytes",
                    if worst == u128::MAX { "unboundedly many".to_owned() } else { worst.to_string() }
                ),
                Some("a transform that grows its input this much (nested `replace`s, say) would fail on every identity".into()),
            );
        }
    }

    fn run(mut self, config: &Config) -> Vec<ValidationError> {
        let identity_multi = |name: &str| config.identity.attributes.get(name).is_some_and(|a| a.multi);
        let identity_names: Vec<&str> = config.identity.attributes.keys().map(Text::as_str).collect();
        for (name, attr) in &config.identity.attributes {
            let path = format!("identity.attributes.{name}");
            let place = Place {
                attribute: Some(name.clone().into()),
                path: path.clone(),
                ..Place::default()
            };
            if attr.value_type == ValueType::Reference {
                match &attr.match_attribute {
                    None => self.push(
                        ValidationErrorKind::MissingMatch,
                        place.clone(),
                        format!("reference attribute `{name}` needs `match`: the identity attribute its value is looked up in"),
                        None,
                    ),
                    Some(target) => self.identity_attr(&identity_names, target, Place { path: format!("{path}.match"), ..place.clone() }),
                }
            }
            if let Some(computed) = &attr.computed {
                self.transform_budget(
                    computed,
                    &identity_multi,
                    Place {
                        path: format!("{path}.computed"),
                        ..place.clone()
                    },
                );
                for used in computed.attributes() {
                    self.identity_attr(
                        &identity_names,
                        &used,
                        Place {
                            path: format!("{path}.computed"),
                            ..place.clone()
                        },
                    );
                }
            }
        }
        if let Some(cycle) = computed_cycle(config) {
            self.push(
                ValidationErrorKind::ComputedCycle,
                Place {
                    attribute: cycle.first().cloned(),
                    path: "identity.attributes".into(),
                    ..Place::default()
                },
                format!(
                    "computed attributes depend on each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
                None,
            );
        }
        for (name, role) in &config.roles {
            let path = format!("roles.{name}");
            self.transform_budget(
                &role.criteria,
                &identity_multi,
                Place {
                    path: format!("{path}.criteria"),
                    ..Place::default()
                },
            );
            for used in role.criteria.attributes() {
                self.identity_attr(
                    &identity_names,
                    &used,
                    Place {
                        path: format!("{path}.criteria"),
                        ..Place::default()
                    },
                );
            }
            for (system_name, grants) in &role.grants {
                let place = Place {
                    system: Some(system_name.clone()),
                    path: format!("{path}.grants.{system_name}"),
                    ..Place::default()
                };
                let Some(system) = config.systems.get(system_name.as_str()) else {
                    let names: Vec<&str> = config.systems.keys().map(Text::as_str).collect();
                    let hint = suggest(system_name, &names);
                    self.push(
                        ValidationErrorKind::UnknownSystem,
                        place,
                        format!("system `{system_name}` is not configured"),
                        hint,
                    );
                    continue;
                };
                for (attribute, values) in grants {
                    let place = Place {
                        attribute: Some(attribute.clone()),
                        path: format!("{}.{attribute}", place.path),
                        ..place.clone()
                    };
                    match system.attribute(attribute) {
                        None => self.account_attr(system, attribute, place),
                        Some(decl) if !decl.multi => self.push(
                            ValidationErrorKind::GrantNotMulti,
                            place,
                            format!("role `{name}` grants values on `{attribute}`, which is not multi-valued"),
                            None,
                        ),
                        Some(decl) => {
                            if !decl.entitlement {
                                self.push(
                                    ValidationErrorKind::GrantNotEntitlement,
                                    place.clone(),
                                    format!(
                                        "role `{name}` grants values on `{attribute}`, which is not marked `entitlement`"
                                    ),
                                    Some("add \"entitlement\": true to the attribute".into()),
                                );
                            }
                            for (i, value) in values.iter().enumerate() {
                                if Scalar::parse(value, decl.value_type).is_none() {
                                    self.push(
                                        ValidationErrorKind::InvalidGrantValue,
                                        Place {
                                            path: format!("{}[{i}]", place.path),
                                            ..place.clone()
                                        },
                                        format!(
                                            "role `{name}` grants `{value}` on `{attribute}`, which is not a {}",
                                            decl.value_type
                                        ),
                                        None,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Some(lifecycle) = &config.lifecycle {
            self.identity_attr(
                &identity_names,
                &lifecycle.attribute,
                Place {
                    path: "lifecycle.attribute".into(),
                    ..Place::default()
                },
            );
        }
        for (system_name, system) in &config.systems {
            self.system(system_name, system, config, &identity_names, &identity_multi);
        }
        self.errors
    }

    fn identity_attr(&mut self, names: &[&str], name: &str, place: Place) {
        if !names.contains(&name) {
            let hint = suggest(name, names);
            self.push(
                ValidationErrorKind::UnknownAttribute,
                Place {
                    attribute: Some(name.to_owned()),
                    ..place
                },
                format!("identity attribute `{name}` is not declared"),
                hint,
            );
        }
    }

    fn account_attr(&mut self, system: &SystemConfig, name: &str, place: Place) {
        if system.attribute(name).is_none() {
            let names: Vec<&str> = system.schema.attributes.keys().map(Text::as_str).collect();
            let hint = suggest(name, &names);
            self.push(
                ValidationErrorKind::UnknownAttribute,
                Place {
                    attribute: Some(name.to_owned()),
                    ..place
                },
                format!("account attribute `{name}` is not declared in the schema"),
                hint,
            );
        }
    }

    fn system(
        &mut self,
        system_name: &str,
        system: &SystemConfig,
        config: &Config,
        identity_names: &[&str],
        identity_multi: &dyn Fn(&str) -> bool,
    ) {
        let base = format!("systems.{system_name}");
        let at = |path: String, rule: Option<String>, attribute: Option<&str>| Place {
            system: Some(system_name.to_owned()),
            rule,
            attribute: attribute.map(str::to_owned),
            path,
        };
        if system_name.starts_with('@') {
            self.push(
                ValidationErrorKind::ReservedSystemName,
                at(base.clone(), None, None),
                format!(
                    "system name `{system_name}` starts with `@`, which is reserved for the engine's own \
                     provenance (`@host`, `@computed`)"
                ),
                Some(format!("name it `{}`", system_name.trim_start_matches('@'))),
            );
        }
        for (field, key) in [
            ("account_id", &system.schema.account_id),
            ("account_name", &system.schema.account_name),
        ] {
            let place = at(format!("{base}.schema.{field}"), None, Some(key));
            match system.attribute(key) {
                None => {
                    let names: Vec<&str> = system.schema.attributes.keys().map(Text::as_str).collect();
                    let hint = suggest(key, &names);
                    self.push(
                        ValidationErrorKind::InvalidKeyAttribute,
                        place,
                        format!("`{field}` names `{key}`, which is not declared in the schema"),
                        hint,
                    );
                }
                Some(attr) if attr.multi => self.push(
                    ValidationErrorKind::InvalidKeyAttribute,
                    place,
                    format!("`{field}` names `{key}`, which is multi-valued; a key must be single-valued"),
                    None,
                ),
                Some(_) => {}
            }
        }
        for (name, attr) in &system.schema.attributes {
            let place = at(format!("{base}.schema.attributes.{name}"), None, Some(name));
            if attr.entitlement && attr.value_type == ValueType::Boolean {
                self.push(
                    ValidationErrorKind::BooleanEntitlement,
                    place.clone(),
                    format!("`{name}` is a boolean and cannot be an entitlement"),
                    None,
                );
            }
            if let Some(target) = &attr.match_attribute {
                self.identity_attr(
                    identity_names,
                    target,
                    Place {
                        path: format!("{}.match", place.path),
                        ..place
                    },
                );
            }
        }
        for (i, rule) in system.correlation.iter().enumerate() {
            let rule_name = format!("correlation[{i}]");
            if rule.is_empty() {
                self.push(
                    ValidationErrorKind::EmptyRule,
                    at(format!("{base}.{rule_name}"), Some(rule_name.clone()), None),
                    "a correlation rule needs at least one attribute pair".into(),
                    None,
                );
            }
            for (j, pair) in rule.iter().enumerate() {
                let path = format!("{base}.{rule_name}[{j}]");
                self.account_attr(
                    system,
                    &pair.account,
                    at(format!("{path}.account"), Some(rule_name.clone()), None),
                );
                self.identity_attr(
                    identity_names,
                    &pair.identity,
                    at(format!("{path}.identity"), Some(rule_name.clone()), None),
                );
            }
        }
        let mut writers: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in system.flows.iter().enumerate() {
            let rule_name = format!("flows[{i}]");
            let path = format!("{base}.{rule_name}");
            self.account_attr(
                system,
                &rule.account,
                at(format!("{path}.account"), Some(rule_name.clone()), None),
            );
            self.identity_attr(
                identity_names,
                &rule.identity,
                at(format!("{path}.identity"), Some(rule_name.clone()), None),
            );
            for (field, score) in [
                ("create", rule.create),
                ("update", rule.update),
                ("delete", rule.delete),
            ] {
                if !(0..=100).contains(&score) {
                    self.push(
                        ValidationErrorKind::ScoreOutOfRange,
                        at(format!("{path}.{field}"), Some(rule_name.clone()), Some(&rule.identity)),
                        format!("`{field}` score {score} is outside 0..=100"),
                        None,
                    );
                }
            }
            if let Some(t) = &rule.transform_in {
                let account_multi = |name: &str| system.schema.attributes.get(name).is_some_and(|a| a.multi);
                self.transform_budget(
                    t,
                    &account_multi,
                    at(format!("{path}.in"), Some(rule_name.clone()), Some(&rule.identity)),
                );
                for used in t.attributes() {
                    self.account_attr(system, &used, at(format!("{path}.in"), Some(rule_name.clone()), None));
                }
            }
            if let Some(t) = &rule.transform_out {
                self.transform_budget(
                    t,
                    identity_multi,
                    at(format!("{path}.out"), Some(rule_name.clone()), Some(&rule.account)),
                );
                for used in t.attributes() {
                    self.identity_attr(
                        identity_names,
                        &used,
                        at(format!("{path}.out"), Some(rule_name.clone()), None),
                    );
                }
            }
            let declared = (
                system.schema.attributes.get(rule.account.as_str()),
                config.identity.attributes.get(rule.identity.as_str()),
            );
            if let (Some(account), Some(identity)) = declared {
                let account_side = ("account attribute", rule.account.as_str(), account.value_type);
                let identity_side = ("identity attribute", rule.identity.as_str(), identity.value_type);
                // (carries values untransformed, from, to) per direction.
                let directions = [
                    (
                        rule.direction.is_inbound() && rule.transform_in.is_none(),
                        account_side,
                        identity_side,
                    ),
                    (
                        rule.direction.is_outbound() && rule.transform_out.is_none(),
                        identity_side,
                        account_side,
                    ),
                ];
                for (applies, (from_side, from_name, from), (to_side, to_name, to)) in directions {
                    if applies && !converts(from, to) {
                        self.push(
                            ValidationErrorKind::TypeMismatch,
                            at(path.clone(), Some(rule_name.clone()), Some(&rule.identity)),
                            format!(
                                "{from_side} `{from_name}` is {from} and {to_side} `{to_name}` is {to}: no {from} value converts to {to}"
                            ),
                            Some("declare matching types, or convert with a transform (`in` / `out`)".into()),
                        );
                    }
                }
            }
            let writes_out = rule.direction.is_outbound() || rule.direction == Direction::Disabled;
            if rule.enabled && writes_out {
                if let Some(first) = writers.insert(rule.account.as_str(), i) {
                    self.push(
                        ValidationErrorKind::ConflictingOutbound,
                        at(path, Some(rule_name), Some(&rule.account)),
                        format!(
                            "flows[{first}] and flows[{i}] both write account attribute `{}`",
                            rule.account
                        ),
                        Some("disable one of them or give them different account attributes".into()),
                    );
                }
            }
        }
        self.lifecycle_of_accounts(system, &base, identity_names, identity_multi, &at);
        for (name, limit) in system.thresholds.percentages() {
            if let Some(limit) = limit {
                if limit.is_nan() || limit < 0.0 {
                    self.push(
                        ValidationErrorKind::InvalidThreshold,
                        at(format!("{base}.thresholds.{name}"), None, None),
                        format!("`{name}` must be a percentage of 0 or more, not {limit}"),
                        None,
                    );
                }
            }
        }
    }
}

/// Builds the place of a problem inside one system: (path, rule, attribute).
type PlaceAt<'a> = dyn Fn(String, Option<String>, Option<&str>) -> Place + 'a;

impl Checker {
    /// `scope` and `deprovisioning` of a system (SPEC 11).
    fn lifecycle_of_accounts(
        &mut self,
        system: &SystemConfig,
        base: &str,
        identity_names: &[&str],
        identity_multi: &dyn Fn(&str) -> bool,
        at: &PlaceAt<'_>,
    ) {
        if let Some(scope) = &system.scope {
            self.transform_budget(scope, identity_multi, at(format!("{base}.scope"), None, None));
            for used in scope.attributes() {
                self.identity_attr(identity_names, &used, at(format!("{base}.scope"), None, None));
            }
        }
        let Some(deprovisioning) = &system.deprovisioning else {
            return;
        };
        let path = format!("{base}.deprovisioning");
        if let Some(days) = &deprovisioning.delete_after_days {
            if deprovisioning.delete_after().is_none() {
                self.push(
                    ValidationErrorKind::InvalidDeleteAfter,
                    at(format!("{path}.delete_after_days"), None, None),
                    format!(
                        "`delete_after_days` must be a whole number of days from 0 to {MAX_DELETE_AFTER_DAYS}, not {days}"
                    ),
                    None,
                );
            }
        }
        for (field, values) in [("disable", &deprovisioning.disable), ("enable", &deprovisioning.enable)] {
            for (attribute, raw) in values {
                let place = at(format!("{path}.{field}.{attribute}"), None, Some(attribute));
                let Some(decl) = system.attribute(attribute) else {
                    self.account_attr(system, attribute, place);
                    continue;
                };
                let problem = if decl.multi {
                    Some(format!(
                        "`{attribute}` is multi-valued; `{field}` sets single-valued attributes only"
                    ))
                } else if *attribute == system.schema.account_id {
                    Some(format!(
                        "`{attribute}` is the account key, which `{field}` cannot change"
                    ))
                } else if Value::from_json(raw, decl.value_type, false, decl.case_exact).is_err() {
                    Some(format!(
                        "`{field}` gives `{attribute}` the value {raw}, which is not a {}",
                        decl.value_type
                    ))
                } else {
                    None
                };
                if let Some(message) = problem {
                    self.push(ValidationErrorKind::InvalidDeprovisioningValue, place, message, None);
                }
            }
        }
    }
}

/// The first cycle among computed attributes' inputs, as a path `a -> b -> a`.
pub(crate) fn computed_cycle(config: &Config) -> Option<Vec<String>> {
    let inputs = |name: &str| -> Vec<String> {
        config
            .identity
            .attributes
            .get(name)
            .and_then(|a| a.computed.as_ref())
            .map(|t| t.attributes().into_iter().collect())
            .unwrap_or_default()
    };
    // Depth-first search with colours: 1 = on the current path, 2 = done.
    fn visit(
        name: &str,
        inputs: &dyn Fn(&str) -> Vec<String>,
        colour: &mut HashMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match colour.get(name) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle: Vec<String> = path.get(start..).map(<[String]>::to_vec).unwrap_or_default();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        colour.insert(name.to_owned(), 1);
        path.push(name.to_owned());
        for next in inputs(name) {
            if let Some(cycle) = visit(&next, inputs, colour, path) {
                return Some(cycle);
            }
        }
        path.pop();
        colour.insert(name.to_owned(), 2);
        None
    }
    let mut colour = HashMap::new();
    for name in config.identity.attributes.keys() {
        if let Some(cycle) = visit(name, &inputs, &mut colour, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

/// The declared name closest to `name`: same letters ignoring case, or within two edits.
pub(crate) fn suggest(name: &str, declared: &[&str]) -> Option<String> {
    let lower = name.to_lowercase();
    declared
        .iter()
        .map(|d| {
            let distance = if d.to_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &d.to_lowercase())
            };
            (distance, *d)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, d)| format!("did you mean `{d}`?"))
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row.first().copied().unwrap_or(0);
        if let Some(first) = row.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j + 1).copied().unwrap_or(usize::MAX);
            let left = row.get(j).copied().unwrap_or(usize::MAX);
            let diagonal = prev + usize::from(ca != *cb);
            prev = above;
            if let Some(cell) = row.get_mut(j + 1) {
                *cell = diagonal.min(above.saturating_add(1)).min(left.saturating_add(1));
            }
        }
    }
    row.last().copied().unwrap_or(0)
}

/// Whether some value of type `from` converts to type `to` (as the engine converts a
/// flow's value: through its text form when the types differ).
fn converts(from: ValueType, to: ValueType) -> bool {
    let samples: &[Scalar] = match from {
        // Text may hold anything: its values are checked one by one.
        ValueType::String | ValueType::Reference => return true,
        ValueType::Integer => &[Scalar::Integer(0), Scalar::Integer(1), Scalar::Integer(20_200_101)],
        ValueType::Boolean => &[Scalar::Boolean(true), Scalar::Boolean(false)],
        ValueType::Date => &[Scalar::Date(
            chrono::NaiveDate::from_ymd_opt(2020, 1, 15).unwrap_or_default(),
        )],
        ValueType::Datetime => &[Scalar::Datetime(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)],
    };
    samples.iter().any(|s| s.convert(to).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_debug_as_the_list_a_main_function_prints() {
        let text = r#"{"identity": {"attributes": {}}, "systems": {"hr": {"schema": {"account_id": "id", "account_name": "id", "attributes": {}}}}}"#;
        let err = ValidatedConfig::from_json(text).unwrap_err();
        let debug = format!("{err:?}");
        assert!(
            debug.starts_with("Invalid(the configuration has 2 problem(s):"),
            "{debug}"
        );
        assert!(debug.contains("invalid_key_attribute"), "{debug}");
        assert!(format!("{err:#?}").contains("ValidationError {"));
    }

    #[test]
    fn flows_between_types_no_value_converts_between_are_found() {
        use ValueType::*;
        let types = [String, Integer, Boolean, Date, Datetime, Reference];
        let mut table = Vec::new();
        for from in types {
            for to in types {
                if !converts(from, to) {
                    table.push(format!("{from}->{to}"));
                }
            }
        }
        // Text converts by value; every other pair converts only to itself.
        let expected = [
            "integer->boolean",
            "integer->date",
            "integer->datetime",
            "boolean->integer",
            "boolean->date",
            "boolean->datetime",
            "date->integer",
            "date->boolean",
            "date->datetime",
            "datetime->integer",
            "datetime->boolean",
            "datetime->date",
        ];
        assert_eq!(table, expected);
    }

    #[test]
    fn a_flow_between_inconvertible_types_is_a_type_mismatch_unless_a_transform_converts() {
        let config = |flow: serde_json::Value| {
            serde_json::json!({
                "identity": { "attributes": { "n": { "type": "string" }, "hired": { "type": "integer" } } },
                "systems": { "hr": {
                    "schema": { "account_id": "id", "account_name": "id", "attributes": { "id": { "type": "string" }, "start": { "type": "date" } } },
                    "authoritative": true,
                    "flows": [ { "account": "id", "identity": "n", "direction": "inbound" }, flow ]
                } }
            })
            .to_string()
        };
        let err = ValidatedConfig::from_json(&config(
            serde_json::json!({ "account": "start", "identity": "hired", "direction": "bidirectional" }),
        ))
        .unwrap_err();
        let ConfigError::Invalid(errors) = err else {
            panic!("{err:?}");
        };
        let found: Vec<(&str, &str, &str)> = errors
            .0
            .iter()
            .map(|e| (e.kind().as_str(), e.place().path.as_str(), e.message()))
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "type_mismatch",
                    "systems.hr.flows[1]",
                    "account attribute `start` is date and identity attribute `hired` is integer: no date value converts to integer"
                ),
                (
                    "type_mismatch",
                    "systems.hr.flows[1]",
                    "identity attribute `hired` is integer and account attribute `start` is date: no integer value converts to date"
                ),
            ]
        );
        // Converted by a transform in each direction it flows: accepted.
        let converted = serde_json::json!({
            "account": "start", "identity": "hired", "direction": "bidirectional",
            "in": { "concat": [ { "attr": "start" } ] }, "out": { "concat": [ { "attr": "hired" } ] }
        });
        assert!(ValidatedConfig::from_json(&config(converted)).is_ok());
    }
    use serde_json::json;

    fn validate(j: serde_json::Value) -> Result<ValidatedConfig, ValidationErrors> {
        serde_json::from_value::<Config>(j).unwrap().validate()
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let errors = validate(json!({
            "identity": {"attributes": {"employeeNumber": {"type": "string"}, "boss": {"type": "reference"}}},
            "systems": {"hr": {
                "schema": {"account_id": "emp", "account_name": "groups", "attributes": {
                    "id": {"type": "string"}, "groups": {"type": "string", "multi": true},
                    "flag": {"type": "boolean", "entitlement": true}}},
                "correlation": [[{"account": "id", "identity": "employeNumber"}]],
                "flows": [{"account": "Id", "identity": "employeeNumber", "direction": "inbound", "create": 101, "update": -1}]
            }}
        }))
        .unwrap_err();
        let kinds: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.kind().as_str(), e.place().path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("missing_match", "identity.attributes.boss"),
                ("invalid_key_attribute", "systems.hr.schema.account_id"),
                ("invalid_key_attribute", "systems.hr.schema.account_name"),
                ("boolean_entitlement", "systems.hr.schema.attributes.flag"),
                ("unknown_attribute", "systems.hr.correlation[0][0].identity"),
                ("unknown_attribute", "systems.hr.flows[0].account"),
                ("score_out_of_range", "systems.hr.flows[0].create"),
                ("score_out_of_range", "systems.hr.flows[0].update"),
            ]
        );
        let typo = errors
            .0
            .iter()
            .find(|e| e.place().path.ends_with("correlation[0][0].identity"))
            .unwrap();
        assert_eq!(typo.hint(), Some("did you mean `employeeNumber`?"));
        assert_eq!(typo.place().system.as_deref(), Some("hr"));
        assert_eq!(typo.place().rule.as_deref(), Some("correlation[0]"));
    }

    #[test]
    fn a_sound_config_validates() {
        let ok = validate(json!({
            "identity": {"attributes": {"employeeNumber": {"type": "string"}}},
            "systems": {"hr": {
                "schema": {"account_id": "id", "account_name": "id", "attributes": {"id": {"type": "string"}}},
                "flows": [{"account": "id", "identity": "employeeNumber", "direction": "inbound", "create": 100}]
            }}
        }));
        assert!(ok.is_ok());
    }

    /// `levels` nested `replace`s of `a` by ten of them over `attribute`.
    fn growing(attribute: &str, levels: usize) -> serde_json::Value {
        let mut j = json!({"attr": attribute});
        for _ in 0..levels {
            j = json!({"replace": [j, "a", "aaaaaaaaaa"]});
        }
        j
    }

    fn config_with_transforms(levels: usize) -> serde_json::Value {
        json!({
            "identity": {"attributes": {
                "name": {"type": "string"},
                "display": {"type": "string", "computed": growing("name", levels)}
            }},
            "roles": {"r": {"criteria": {"eq": [growing("name", levels), "x"]}, "grants": {}}},
            "systems": {"hr": {
                "schema": {"account_id": "id", "account_name": "id", "attributes": {"id": {"type": "string"}}},
                "scope": {"is_empty": growing("name", levels)},
                "flows": [
                    {"account": "id", "identity": "name", "direction": "inbound", "in": growing("id", levels)},
                    {"account": "id", "identity": "name", "direction": "outbound", "out": growing("name", levels)}
                ]
            }}
        })
    }

    #[test]
    fn transforms_past_the_budget_are_refused_everywhere_at_once() {
        assert!(validate(config_with_transforms(3)).is_ok());
        let errors = validate(config_with_transforms(12)).unwrap_err();
        let found: Vec<_> = errors
            .0
            .iter()
            .map(|e| {
                (
                    e.kind().as_str(),
                    e.place().path.as_str(),
                    e.place().attribute.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    "transform_too_large",
                    "identity.attributes.display.computed",
                    Some("display")
                ),
                ("transform_too_large", "roles.r.criteria", None),
                ("transform_too_large", "systems.hr.flows[0].in", Some("name")),
                ("transform_too_large", "systems.hr.flows[1].out", Some("id")),
                ("transform_too_large", "systems.hr.scope", None),
            ]
        );
    }

    #[test]
    fn two_rules_writing_one_account_attribute_conflict() {
        let errors = validate(json!({
            "identity": {"attributes": {"a": {"type": "string"}, "b": {"type": "string"}}},
            "systems": {"ad": {
                "schema": {"account_id": "id", "account_name": "id", "attributes": {"id": {"type": "string"}}},
                "flows": [{"account": "id", "identity": "a", "direction": "outbound"},
                          {"account": "id", "identity": "b", "direction": "disabled"}]
            }}
        }))
        .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].kind(), ValidationErrorKind::ConflictingOutbound);
    }

    #[test]
    fn scope_and_deprovisioning_problems_are_reported_together() {
        let system = |deprovisioning: serde_json::Value| {
            json!({
                "schema": {"account_id": "id", "account_name": "id", "attributes": {
                    "id": {"type": "string"}, "locked": {"type": "boolean"},
                    "groups": {"type": "string", "multi": true, "entitlement": true}}},
                "scope": {"eq": [{"attr": "statsu"}, "active"]},
                "deprovisioning": deprovisioning
            })
        };
        let errors = validate(json!({
            "identity": {"attributes": {"status": {"type": "string"}}},
            "systems": {
                "a": system(json!({"disable": {"locked": "yes", "lockd": true, "groups": []}, "delete_after_days": -3})),
                "b": system(json!({"enable": {"id": "x", "locked": false}, "delete_after_days": 1.5})),
                "c": system(json!({"delete_after_days": 36501}))
            }
        }))
        .unwrap_err();
        let kinds: Vec<_> = errors
            .0
            .iter()
            .map(|e| (e.kind().as_str(), e.place().path.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("unknown_attribute", "systems.a.scope"),
                ("invalid_delete_after", "systems.a.deprovisioning.delete_after_days"),
                (
                    "invalid_deprovisioning_value",
                    "systems.a.deprovisioning.disable.locked"
                ),
                ("unknown_attribute", "systems.a.deprovisioning.disable.lockd"),
                (
                    "invalid_deprovisioning_value",
                    "systems.a.deprovisioning.disable.groups"
                ),
                ("unknown_attribute", "systems.b.scope"),
                ("invalid_delete_after", "systems.b.deprovisioning.delete_after_days"),
                ("invalid_deprovisioning_value", "systems.b.deprovisioning.enable.id"),
                ("unknown_attribute", "systems.c.scope"),
                ("invalid_delete_after", "systems.c.deprovisioning.delete_after_days"),
            ]
        );
        let scope = &errors.0[0];
        assert_eq!(scope.hint(), Some("did you mean `status`?"));
        let ok = validate(json!({
            "identity": {"attributes": {"status": {"type": "string"}}},
            "systems": {"a": {
                "schema": {"account_id": "id", "account_name": "id", "attributes": {
                    "id": {"type": "string"}, "locked": {"type": "boolean"}}},
                "scope": {"eq": [{"attr": "status"}, "active"]},
                "deprovisioning": {"disable": {"locked": true}, "enable": {"locked": false}, "delete_after_days": 0}
            }}
        }))
        .unwrap();
        let days = ok
            .system("a")
            .and_then(|s| s.deprovisioning.as_ref())
            .and_then(|d| d.delete_after());
        assert_eq!(days, Some(chrono::TimeDelta::zero()));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(
            suggest("Dept", &["dept", "title"]).as_deref(),
            Some("did you mean `dept`?")
        );
        assert_eq!(suggest("zzzz", &["dept"]), None);
    }
}
