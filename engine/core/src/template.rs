//! Templates and expressions in MiniJinja: compiled once when a flow loads, rendered with a fuel
//! budget and an output cap so that a runaway template cannot stall or flood a conversation.

use std::collections::HashSet;
use std::sync::LazyLock;

use minijinja::{Environment, Expression, UndefinedBehavior, Value};

/// Fuel (roughly VM instructions) a single render or evaluation may burn.
pub const FUEL: u64 = 20_000;
/// The most bytes a template may render.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Names every template may use without declaring them.
pub const BUILTIN_NAMES: &[&str] = &[
    // Set by the engine.
    "user",
    "referral",
    "message",
    "now",
    // MiniJinja's global functions and loop helpers.
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "self",
    "super",
    "varargs",
    "kwargs",
    "caller",
];

/// A template or expression problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl TemplateError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        TemplateError(message.into())
    }

    fn from_minijinja(err: &minijinja::Error) -> Self {
        // The kind's description ("syntax error", "undefined value") plus the detail.
        let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
        let line = err
            .line()
            .map(|l| format!(" (template line {l})"))
            .unwrap_or_default();
        TemplateError(format!("{}{detail}{line}", err.kind()))
    }
}

/// Applies the engine's limits to a MiniJinja environment.
fn configure(env: &mut Environment<'static>) {
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    // `user.first_name` before a profile is known, or `output.row.status` when nothing was
    // found, read as undefined (empty) instead of failing the conversation.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // `none` (a variable without a value) prints as nothing, like undefined, not as "none".
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
}

/// The shared environment that expressions are compiled in.
static EXPRESSIONS: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    configure(&mut env);
    env
});

/// A compiled expression, e.g. `order.total > 100`.
pub struct Expr {
    source: String,
    compiled: Expression<'static, 'static>,
    /// The top-level names it reads, so that only those are put in its context.
    names: Vec<String>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Compiles `source`.
    pub fn compile(source: &str) -> Result<Self, TemplateError> {
        let compiled = EXPRESSIONS
            .compile_expression_owned(source.to_string())
            .map_err(|err| TemplateError::from_minijinja(&err))?;
        let mut names: Vec<String> = compiled.undeclared_variables(false).into_iter().collect();
        names.sort();
        Ok(Expr {
            source: source.to_string(),
            compiled,
            names,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression with the variables of `scope`.
    pub fn eval(&self, scope: &dyn Scope) -> Result<Value, TemplateError> {
        self.compiled
            .eval(context(&self.names, scope))
            .map_err(|err| TemplateError::from_minijinja(&err))
    }

    /// Evaluates the expression and converts the result to JSON (undefined becomes null).
    pub fn eval_json(&self, scope: &dyn Scope) -> Result<serde_json::Value, TemplateError> {
        to_json(&self.eval(scope)?)
    }

    /// The top-level variable names the expression reads.
    pub fn variables(&self) -> HashSet<String> {
        self.names.iter().cloned().collect()
    }

    /// The fields of `user` (the profile) the expression reads.
    pub fn user_fields(&self) -> Vec<String> {
        user_fields(self.compiled.undeclared_variables(true))
    }
}

/// The profile fields among dotted variable paths (`user.first_name` gives `first_name`); a
/// bare `user` reads the whole profile, taken as the name fields.
fn user_fields(paths: HashSet<String>) -> Vec<String> {
    let mut fields = Vec::new();
    for path in paths {
        match path.strip_prefix("user") {
            Some("") => fields.extend(["first_name".to_string(), "last_name".to_string()]),
            Some(rest) => {
                if let Some(field) = rest.strip_prefix('.') {
                    fields.push(field.split('.').next().unwrap_or(field).to_string());
                }
            }
            None => {}
        }
    }
    fields.sort();
    fields.dedup();
    fields
}

/// Where templates and expressions find their variables. Only the names a template reads are
/// looked up, so a render never converts the whole conversation state.
pub trait Scope {
    /// The value of variable `name`, if it has one.
    fn get(&self, name: &str) -> Option<Value>;
}

impl Scope for serde_json::Map<String, serde_json::Value> {
    fn get(&self, name: &str) -> Option<Value> {
        serde_json::Map::get(self, name).map(from_json)
    }
}

fn context(names: &[String], scope: &dyn Scope) -> Value {
    Value::from_pairs(
        names
            .iter()
            .filter_map(|name| scope.get(name).map(|value| (name.as_str(), value))),
    )
}

/// The filters and tests that `source` uses but MiniJinja does not provide, e.g. `filter
/// \`shout\``. MiniJinja only finds those when it renders, so a flow would load and then fail
/// mid-conversation; the compiler reports them instead. `in_expression` is true for expressions.
pub fn unknown_filters_and_tests(source: &str, in_expression: bool) -> Vec<String> {
    use minijinja::machinery::{Token, tokenize};
    let mut unknown = Vec::new();
    let mut previous: [Option<Token<'_>>; 2] = [None, None];
    for token in tokenize(source, in_expression, EXPRESSIONS.syntax().clone()) {
        let Ok((token, _)) = token else { break };
        if let Token::Ident(name) = token {
            let kind = match (&previous[0], &previous[1]) {
                (_, Some(Token::Pipe)) => Some("filter"),
                (Some(Token::BlockStart), Some(Token::Ident("filter"))) => Some("filter"),
                (_, Some(Token::Ident("is"))) if name != "not" => Some("test"),
                (Some(Token::Ident("is")), Some(Token::Ident("not"))) => Some("test"),
                _ => None,
            };
            if let Some(kind) = kind
                && !is_known(kind, name)
            {
                let what = format!("{kind} `{name}`");
                if !unknown.contains(&what) {
                    unknown.push(what);
                }
            }
        }
        previous = [previous[1].take(), Some(token)];
    }
    unknown
}

/// Whether the environment provides filter or test `name`, found by trying it once (MiniJinja
/// has no public lookup); answers are remembered.
fn is_known(kind: &str, name: &str) -> bool {
    static KNOWN: LazyLock<std::sync::Mutex<std::collections::HashMap<String, bool>>> =
        LazyLock::new(Default::default);
    let key = format!("{kind}:{name}");
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.get(&key).copied()) {
        return known;
    }
    let probe = if kind == "filter" {
        format!("none | {name}")
    } else {
        format!("none is {name}")
    };
    let known = match EXPRESSIONS
        .compile_expression(&probe)
        .and_then(|e| e.eval(()))
    {
        Ok(_) => true,
        Err(err) => !matches!(
            err.kind(),
            minijinja::ErrorKind::UnknownFilter | minijinja::ErrorKind::UnknownTest
        ),
    };
    if let Ok(mut cache) = KNOWN.lock() {
        cache.insert(key, known);
    }
    known
}

/// Converts any serializable value into a MiniJinja value.
pub fn to_value<T: serde::Serialize>(value: &T) -> Value {
    Value::from(minijinja::value::Serde(value))
}

/// Converts a JSON value into a MiniJinja value, directly (faster than going through serde).
pub fn from_json(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(from_json).collect::<Vec<_>>()),
        J::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), from_json(v)))),
    }
}

/// Converts a MiniJinja value to JSON.
pub fn to_json(value: &Value) -> Result<serde_json::Value, TemplateError> {
    if value.is_undefined() || value.is_none() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::to_value(value)
        .map_err(|err| TemplateError(format!("cannot convert result to JSON: {err}")))
}

/// A text that may be a template: plain texts are kept as they are and never touch MiniJinja.
#[derive(Debug, Clone)]
pub enum Text {
    /// A text without template syntax.
    Plain(String),
    /// A template in the flow's [`Templates`]: its name and the names it reads.
    Template(String, Vec<String>),
}

/// The templates of one flow, compiled into one MiniJinja environment.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        let mut env = Environment::new();
        configure(&mut env);
        Templates { env }
    }
}

/// Whether a text could render as nothing but whitespace: all it writes outside `{{ }}` and
/// `{% %}` blocks is whitespace (`{{ answer }}`).
pub fn may_render_empty(source: &str) -> bool {
    if !has_template_syntax(source) {
        return source.trim().is_empty();
    }
    let mut rest = source;
    let mut literal = String::new();
    while let Some(start) = rest.find("{{").into_iter().chain(rest.find("{%")).min() {
        literal.push_str(&rest[..start]);
        let close = if rest[start..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        match rest[start..].find(close) {
            Some(end) => rest = &rest[start + end + 2..],
            None => return false,
        }
    }
    literal.push_str(rest);
    literal.trim().is_empty()
}

/// Whether `source` uses template syntax at all.
pub fn has_template_syntax(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

impl Templates {
    /// Compiles `source` under a unique `name` and returns it with the variables it reads.
    pub fn add(
        &mut self,
        name: String,
        source: &str,
    ) -> Result<(Text, HashSet<String>), TemplateError> {
        if !has_template_syntax(source) {
            return Ok((Text::Plain(source.to_string()), HashSet::new()));
        }
        self.env
            .add_template_owned(name.clone(), source.to_string())
            .map_err(|err| TemplateError::from_minijinja(&err))?;
        let template = self
            .env
            .get_template(&name)
            .map_err(|err| TemplateError::from_minijinja(&err))?;
        let variables = template.undeclared_variables(false);
        let mut names: Vec<String> = variables.iter().cloned().collect();
        names.sort();
        Ok((Text::Template(name, names), variables))
    }

    /// The fields of `user` (the profile) that `text` reads.
    pub fn user_fields(&self, text: &Text) -> Vec<String> {
        let Text::Template(name, _) = text else {
            return Vec::new();
        };
        match self.env.get_template(name) {
            Ok(template) => user_fields(template.undeclared_variables(true)),
            Err(_) => Vec::new(),
        }
    }

    /// Renders `text` with the variables of `scope`, refusing output over [`MAX_OUTPUT_BYTES`].
    pub fn render(&self, text: &Text, scope: &dyn Scope) -> Result<String, TemplateError> {
        let (name, names) = match text {
            Text::Plain(text) => return Ok(text.clone()),
            Text::Template(name, names) => (name, names),
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|err| TemplateError::from_minijinja(&err))?;
        let output = template
            .render(context(names, scope))
            .map_err(|err| TemplateError::from_minijinja(&err))?;
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(TemplateError(format!(
                "the template rendered {} bytes, more than the {MAX_OUTPUT_BYTES} allowed",
                output.len()
            )));
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_templates_are_stopped() {
        let mut templates = Templates::default();
        let (looping, _) = templates
            .add(
                "t".into(),
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            )
            .unwrap();
        let none = serde_json::Map::new();
        let err = templates.render(&looping, &none).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");

        let (big, _) = templates.add("u".into(), "{{ 'x' * 1000000 }}").unwrap();
        assert!(templates.render(&big, &none).is_err());
    }

    #[test]
    fn unknown_filters_and_tests_are_found_before_rendering() {
        assert_eq!(
            unknown_filters_and_tests(
                "{{ name | shout }} {{ x | upper }} {% if x is weird %}{% endif %}{% filter yell %}a{% endfilter %}",
                false
            ),
            ["filter `shout`", "test `weird`", "filter `yell`"]
        );
        assert_eq!(
            unknown_filters_and_tests("x is not defined and y | length > 2", true),
            Vec::<String>::new()
        );
        assert_eq!(
            unknown_filters_and_tests("'a|b' ~ (x | urlencode)", true),
            Vec::<String>::new()
        );
    }

    #[test]
    fn expressions_keep_types_and_report_variables() {
        let expr = Expr::compile("order.total > limit").unwrap();
        let scope = serde_json::json!({"order": {"total": 120}, "limit": 100});
        let scope = scope.as_object().unwrap();
        assert_eq!(expr.eval_json(scope).unwrap(), serde_json::json!(true));
        let mut names: Vec<_> = expr.variables().into_iter().collect();
        names.sort();
        assert_eq!(names, ["limit", "order"]);
        assert!(Expr::compile("order.total >").is_err());
    }
}
