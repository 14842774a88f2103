//! Typed actions: the [`Action`] trait, the [`Outcome`] an action returns, [`NoInput`] for
//! actions that take none, and [`plugin!`](crate::plugin), which exports a list of actions as
//! the component's `action` interface.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};

use crate::__private::{ActionInfo, ActionResult, WitError};
use crate::{Context, Error};

/// One action of a plugin: what flows call as `<plugin>.<NAME>`.
///
/// The input and output are typed; their JSON Schemas (from [`JsonSchema`], doc comments
/// included) are what the engine shows and checks. List the actions in
/// [`plugin!`](crate::plugin).
pub trait Action {
    /// The action's name within the plugin (`chat` for `openai.chat`): ASCII letters, digits,
    /// `_` and `-`.
    const NAME: &'static str;
    /// What the action does, in one line.
    const DESCRIPTION: &'static str;
    /// The outcomes the action may return besides `ok` and `error` (`not_found`, `denied` ...):
    /// the flow follows the edge of that name. Empty by default.
    const OUTCOMES: &'static [&'static str] = &[];

    /// The input, parsed from the call's JSON. Use [`NoInput`] when there is none.
    type Input: DeserializeOwned + JsonSchema;
    /// The output, serialized to JSON. Use `()` when there is none.
    type Output: Serialize + JsonSchema;

    /// Runs the action.
    fn run(input: Self::Input, ctx: &Context) -> Result<Outcome<Self::Output>, Error>;
}

/// What an action returns: `ok` or one of its declared [`Action::OUTCOMES`], with an output.
///
/// An output converts into an `ok` outcome: `Ok(output.into())`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<T> {
    name: &'static str,
    output: T,
}

impl<T> Outcome<T> {
    /// The `ok` outcome.
    pub fn ok(output: T) -> Self {
        Outcome { name: "ok", output }
    }

    /// The outcome `name`, which must be one of the action's [`Action::OUTCOMES`] (the call
    /// fails with [`Error::Permanent`] otherwise).
    pub fn named(name: &'static str, output: T) -> Self {
        Outcome { name, output }
    }

    /// The outcome's name (`ok`, `not_found` ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether this is the `ok` outcome.
    pub fn is_ok(&self) -> bool {
        self.name == "ok"
    }

    /// The output.
    pub fn output(&self) -> &T {
        &self.output
    }

    /// The output, by value.
    pub fn into_output(self) -> T {
        self.output
    }
}

/// The `ok` outcome with this output.
impl<T> From<T> for Outcome<T> {
    fn from(output: T) -> Self {
        Outcome::ok(output)
    }
}

/// The input of an action that takes none: any JSON (`{}`, `null` ...) is accepted and ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoInput;

impl<'de> Deserialize<'de> for NoInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer)?;
        Ok(NoInput)
    }
}

impl JsonSchema for NoInput {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "NoInput".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "This action takes no input: anything given is ignored."
        })
    }
}

/// Declares a unit struct and exports it as the component's `action` interface, serving the
/// listed [`Action`]s:
///
/// ```ignore
/// influxify_plugin_sdk::plugin!(Currency: [Convert, ListCurrencies]);
/// ```
///
/// `actions()` lists every action with its description, outcomes and the JSON Schemas of its
/// input and output. `invoke` finds the action by name (an unknown name is
/// [`Error::InvalidInput`]), parses the input JSON into [`Action::Input`] (a mismatch is
/// [`Error::InvalidInput`], with the path of the offending field), runs it, checks that the
/// outcome is `ok` or declared, and serializes the output.
///
/// Names are checked when the plugin compiles: each must be ASCII letters, digits, `_` or `-`,
/// actions must not share a name, and `ok` and `error` are implicit outcomes, not to be listed.
///
/// Use it once per plugin, at the crate root or in any module.
#[macro_export]
macro_rules! plugin {
    ($plugin:ident : [$($action:ty),+ $(,)?]) => {
        /// The plugin: its actions, exported as the component's `action` interface.
        struct $plugin;

        const _: () = $crate::__private::check_actions(
            &[$(<$action as $crate::Action>::NAME),+],
            &[$(<$action as $crate::Action>::OUTCOMES),+],
        );

        impl $crate::__private::ActionGuest for $plugin {
            fn actions() -> $crate::__private::Vec<$crate::__private::ActionInfo> {
                ::std::vec![$($crate::__private::describe::<$action>()),+]
            }

            fn invoke(
                action: $crate::__private::String,
                input: $crate::__private::String,
                context: $crate::__private::CallContext,
            ) -> ::core::result::Result<
                $crate::__private::ActionResult,
                $crate::__private::WitError,
            > {
                let context = $crate::Context::from(context);
                $(
                    if action == <$action as $crate::Action>::NAME {
                        return $crate::__private::invoke::<$action>(&input, &context);
                    }
                )+
                ::core::result::Result::Err($crate::__private::unknown_action(
                    &action,
                    &[$(<$action as $crate::Action>::NAME),+],
                ))
            }
        }

        $crate::bindings::export_action!($plugin with_types_in $crate::bindings);
    };
}

/// The WIT description of action `A`, with its schemas.
pub fn describe<A: Action>() -> ActionInfo {
    ActionInfo {
        name: A::NAME.to_string(),
        description: A::DESCRIPTION.to_string(),
        input_schema: schema_of::<A::Input>(),
        output_schema: schema_of::<A::Output>(),
        outcomes: A::OUTCOMES.iter().map(|o| o.to_string()).collect(),
    }
}

fn schema_of<T: JsonSchema>() -> String {
    let schema = SchemaGenerator::default().into_root_schema_for::<T>();
    serde_json::to_string(&schema).unwrap_or_else(|_| "true".to_string())
}

/// Runs action `A` on `input` (JSON text): parse, run, check the outcome, serialize.
pub fn invoke<A: Action>(input: &str, ctx: &Context) -> Result<ActionResult, WitError> {
    run::<A>(input, ctx).map_err(WitError::from)
}

fn run<A: Action>(input: &str, ctx: &Context) -> Result<ActionResult, Error> {
    let input = parse::<A::Input>(input)?;
    let outcome = A::run(input, ctx)?;
    if !outcome.is_ok() && !A::OUTCOMES.contains(&outcome.name) {
        return Err(Error::permanent(format!(
            "action `{}` returned the outcome `{}`, which it does not declare",
            A::NAME,
            outcome.name
        )));
    }
    let output = serde_json::to_string(&outcome.output).map_err(|e| {
        Error::permanent(format!(
            "the output of action `{}` cannot be serialized: {e}",
            A::NAME
        ))
    })?;
    Ok(ActionResult {
        outcome: outcome.name.to_string(),
        output,
    })
}

/// Parses `input` as JSON into `T`; the error names the path of the offending field.
fn parse<T: DeserializeOwned>(input: &str) -> Result<T, Error> {
    let mut deserializer = serde_json::Deserializer::from_str(input);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| Error::invalid_input(e.to_string()))?;
    deserializer
        .end()
        .map_err(|e| Error::invalid_input(e.to_string()))?;
    Ok(value)
}

/// The error for a call to an action the plugin does not have.
pub fn unknown_action(action: &str, known: &[&str]) -> WitError {
    WitError::InvalidInput(format!(
        "no action `{action}` (this plugin has: {})",
        known.join(", ")
    ))
}

/// Checks, at compile time, the names [`plugin!`](crate::plugin) is given: `names[i]` is an
/// action's name and `outcomes[i]` its declared outcomes.
pub const fn check_actions(names: &[&str], outcomes: &[&[&str]]) {
    let mut i = 0;
    while i < names.len() {
        assert!(
            is_name(names[i]),
            "an action's NAME must be ASCII letters, digits, `_` or `-`"
        );
        let mut j = i + 1;
        while j < names.len() {
            assert!(!eq(names[i], names[j]), "two actions have the same NAME");
            j += 1;
        }
        let declared = outcomes[i];
        let mut k = 0;
        while k < declared.len() {
            assert!(
                is_name(declared[k]),
                "an outcome must be ASCII letters, digits, `_` or `-`"
            );
            assert!(
                !eq(declared[k], "ok") && !eq(declared[k], "error"),
                "`ok` and `error` are implicit: OUTCOMES lists the others"
            );
            let mut l = k + 1;
            while l < declared.len() {
                assert!(!eq(declared[k], declared[l]), "an outcome is listed twice");
                l += 1;
            }
            k += 1;
        }
        i += 1;
    }
}

const fn is_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

const fn eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::Value;
    use serde_json::value::RawValue;

    use super::*;

    fn ctx() -> Context {
        Context::new("web/ada", "ada", "web/ada:1:0", 0)
    }

    /// Looks a name up.
    struct Lookup;

    #[derive(Deserialize, JsonSchema)]
    struct Query {
        /// The name to look up.
        name: String,
        filter: Filter,
    }

    #[derive(Deserialize, JsonSchema)]
    struct Filter {
        limit: u32,
    }

    impl Action for Lookup {
        const NAME: &'static str = "lookup";
        const DESCRIPTION: &'static str = "Looks a name up";
        const OUTCOMES: &'static [&'static str] = &["not_found"];
        type Input = Query;
        type Output = Vec<String>;

        fn run(input: Query, _: &Context) -> Result<Outcome<Vec<String>>, Error> {
            match input.name.as_str() {
                "nobody" => Ok(Outcome::named("not_found", Vec::new())),
                "rogue" => Ok(Outcome::named("surprise", Vec::new())),
                "broken" => Err(Error::retryable("upstream down")),
                name => Ok(vec![name.to_string(); input.filter.limit as usize].into()),
            }
        }
    }

    struct Echo;

    impl Action for Echo {
        const NAME: &'static str = "echo";
        const DESCRIPTION: &'static str = "Echoes";
        type Input = Box<RawValue>;
        type Output = Box<RawValue>;

        fn run(input: Box<RawValue>, _: &Context) -> Result<Outcome<Box<RawValue>>, Error> {
            Ok(input.into())
        }
    }

    struct Nothing;

    impl Action for Nothing {
        const NAME: &'static str = "nothing";
        const DESCRIPTION: &'static str = "Takes nothing, gives nothing";
        type Input = NoInput;
        type Output = ();

        fn run(_: NoInput, _: &Context) -> Result<Outcome<()>, Error> {
            Ok(().into())
        }
    }

    #[test]
    fn actions_are_described_with_their_schemas() {
        let info = describe::<Lookup>();
        assert_eq!(info.name, "lookup");
        assert_eq!(info.outcomes, ["not_found"]);
        let input: Value = serde_json::from_str(&info.input_schema).unwrap();
        assert_eq!(input["type"], "object");
        assert_eq!(
            input["properties"]["name"]["description"],
            "The name to look up."
        );
        assert_eq!(input["required"], serde_json::json!(["name", "filter"]));
        let output: Value = serde_json::from_str(&info.output_schema).unwrap();
        assert_eq!(output["type"], "array");
    }

    #[test]
    fn calls_are_parsed_run_and_serialized() {
        let result = invoke::<Lookup>(r#"{"name":"ada","filter":{"limit":2}}"#, &ctx()).unwrap();
        assert_eq!(result.outcome, "ok");
        assert_eq!(result.output, r#"["ada","ada"]"#);
        let result = invoke::<Lookup>(r#"{"name":"nobody","filter":{"limit":2}}"#, &ctx()).unwrap();
        assert_eq!(
            (result.outcome.as_str(), result.output.as_str()),
            ("not_found", "[]")
        );
    }

    #[test]
    fn bad_input_is_invalid_input_with_its_path() {
        let err = invoke::<Lookup>(r#"{"name":"ada","filter":{"limit":"x"}}"#, &ctx()).unwrap_err();
        let WitError::InvalidInput(message) = err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("filter.limit: invalid type"),
            "{message}"
        );
        let err = invoke::<Lookup>(r#"{"name":"ada"}"#, &ctx()).unwrap_err();
        assert!(
            matches!(&err, WitError::InvalidInput(m) if m.contains("missing field `filter`")),
            "{err:?}"
        );
        let err = invoke::<Lookup>(r#"{"name":"ada","filter":{"limit":1}} x"#, &ctx()).unwrap_err();
        assert!(
            matches!(&err, WitError::InvalidInput(m) if m.contains("trailing")),
            "{err:?}"
        );
        let err = invoke::<Lookup>("not json", &ctx()).unwrap_err();
        assert!(matches!(err, WitError::InvalidInput(_)), "{err:?}");
    }

    #[test]
    fn errors_keep_their_kind_and_undeclared_outcomes_are_refused() {
        let err =
            invoke::<Lookup>(r#"{"name":"broken","filter":{"limit":1}}"#, &ctx()).unwrap_err();
        assert!(
            matches!(&err, WitError::Retryable(m) if m == "upstream down"),
            "{err:?}"
        );
        let err = invoke::<Lookup>(r#"{"name":"rogue","filter":{"limit":1}}"#, &ctx()).unwrap_err();
        assert!(
            matches!(&err, WitError::Permanent(m) if m.contains("`surprise`")),
            "{err:?}"
        );
    }

    #[test]
    fn raw_json_passes_through_unchanged_and_no_input_takes_anything() {
        let input = r#"{ "b": 1,  "a": [true, null] }"#;
        assert_eq!(invoke::<Echo>(input, &ctx()).unwrap().output, input.trim());
        for input in ["{}", "null", "1", r#"{"x":[1]}"#] {
            assert_eq!(invoke::<Nothing>(input, &ctx()).unwrap().output, "null");
        }
    }

    #[test]
    fn names_are_checked() {
        check_actions(&["a", "b-c", "d_1"], &[&["not_found"], &[], &["x", "y"]]);
        let bad: [(&[&str], &[&[&str]]); 5] = [
            (&["a", "a"], &[&[], &[]]),
            (&["a.b"], &[&[]]),
            (&[""], &[&[]]),
            (&["a"], &[&["ok"]]),
            (&["a"], &[&["x", "x"]]),
        ];
        for (names, outcomes) in bad {
            let result = std::panic::catch_unwind(|| check_actions(names, outcomes));
            assert!(result.is_err(), "{names:?} {outcomes:?}");
        }
    }
}
