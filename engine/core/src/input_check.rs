//! Checks a plugin node's `input` against the JSON Schema its action publishes, as far as can be
//! known before the templates run: required fields, unknown fields when the schema forbids
//! them, and the type and allowed values of literal (untemplated) values.

use serde_json::Value;

use crate::suggest::did_you_mean;

/// What is wrong with `input` for `schema`, one message per problem, with the field's path.
pub fn check(schema: &Value, input: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    Checker { root: schema }.walk(schema, input, "input", &mut problems, 0);
    problems
}

/// How deep `$ref`s are followed (a recursive schema stops there).
const MAX_DEPTH: usize = 32;

/// Walks a value beside its schema, resolving the schema's local `$ref`s against the root.
struct Checker<'s> {
    root: &'s Value,
}

fn is_template(value: &Value) -> bool {
    matches!(value, Value::String(s) if s.contains("{{") || s.contains("{%"))
}

fn type_names(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(types) => types.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl<'s> Checker<'s> {
    /// `schema`, or what its local `$ref` (`#/$defs/...`, `#/definitions/...`) points to.
    fn resolve(&self, schema: &'s Value) -> &'s Value {
        let mut schema = schema;
        for _ in 0..MAX_DEPTH {
            let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
                return schema;
            };
            let Some(pointer) = reference.strip_prefix('#') else {
                return &Value::Null;
            };
            match self.root.pointer(pointer) {
                Some(target) => schema = target,
                None => return &Value::Null,
            }
        }
        &Value::Null
    }

    fn walk(
        &self,
        schema: &'s Value,
        value: &Value,
        path: &str,
        problems: &mut Vec<String>,
        depth: usize,
    ) {
        if is_template(value) || depth > MAX_DEPTH {
            return;
        }
        let schema = self.resolve(schema);
        for all in schema["allOf"].as_array().into_iter().flatten() {
            self.walk(all, value, path, problems, depth + 1);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(choices) = schema[key].as_array()
                && !choices.is_empty()
            {
                let mut first = None;
                for choice in choices {
                    let mut found = Vec::new();
                    self.walk(choice, value, path, &mut found, depth + 1);
                    if found.is_empty() {
                        first = None;
                        break;
                    }
                    first.get_or_insert(found);
                }
                if let Some(found) = first {
                    problems.extend(found);
                    return;
                }
            }
        }
        walk_one(self, schema, value, path, problems, depth);
    }
}

fn walk_one<'s>(
    checker: &Checker<'s>,
    schema: &'s Value,
    value: &Value,
    path: &str,
    problems: &mut Vec<String>,
    depth: usize,
) {
    let types = type_names(schema);
    if !types.is_empty() && !types.iter().any(|t| has_type(value, t)) {
        problems.push(format!(
            "`{path}` is {}, but the action takes {}",
            kind_of(value),
            types.join(" or ")
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        problems.push(format!(
            "`{path}` is {value}, but the action takes one of {}",
            names.join(", ")
        ));
        return;
    }
    let Value::Object(fields) = value else {
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                checker.walk(
                    item_schema,
                    item,
                    &format!("{path}[{i}]"),
                    problems,
                    depth + 1,
                );
            }
        }
        return;
    };
    let properties = schema["properties"].as_object();
    for required in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = required.as_str()
            && !fields.contains_key(name)
        {
            let mut message = format!("`{path}` lacks `{name}`, which the action requires");
            // A field the action does not know may be this one, misspelt.
            if let Some(misspelt) = fields.keys().find(|k| {
                properties.is_none_or(|p| !p.contains_key(k.as_str()))
                    && did_you_mean(k, std::iter::once(name)).is_some()
            }) {
                message.push_str(&format!(
                    "; `{misspelt}` is not a field it takes: did you mean `{name}`?"
                ));
            }
            problems.push(message);
        }
    }
    for (name, field) in fields {
        let field_path = format!("{path}.{name}");
        match properties.and_then(|p| p.get(name)) {
            Some(field_schema) => {
                checker.walk(field_schema, field, &field_path, problems, depth + 1)
            }
            None if schema["additionalProperties"] == Value::Bool(false) => {
                let known = properties
                    .into_iter()
                    .flat_map(|p| p.keys().map(String::as_str));
                let mut message = format!("`{field_path}` is not a field the action takes");
                if let Some(best) = did_you_mean(name, known) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                problems.push(message);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literal_inputs_are_checked_and_templates_trusted() {
        let schema = json!({
            "type": "object",
            "required": ["sheet", "column"],
            "additionalProperties": false,
            "properties": {
                "sheet": {"type": "string"},
                "column": {"type": "string"},
                "match": {"type": "string", "enum": ["exact", "case_insensitive"]},
                "limit": {"type": ["integer", "null"]},
            }
        });
        assert!(check(&schema, &json!({"sheet": "s", "column": "{{ col }}"})).is_empty());
        let problems = check(
            &schema,
            &json!({"sheet": 3, "colum": "a", "match": "fuzzy", "limit": "{{ n }}"}),
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("did you mean `column`")));
        assert!(problems.iter().any(|p| p.contains("lacks `column`")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`input.sheet` is a number"))
        );
        assert!(problems.iter().any(|p| p.contains("one of")));
    }

    #[test]
    fn references_and_alternatives_are_followed() {
        // The shape schemars gives a struct with a nested struct and an optional enum.
        let schema = json!({
            "type": "object",
            "required": ["customer"],
            "properties": {
                "customer": {"$ref": "#/$defs/Customer"},
                "tier": {"anyOf": [{"$ref": "#/$defs/Tier"}, {"type": "null"}]}
            },
            "$defs": {
                "Customer": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {"name": {"type": "string"}}
                },
                "Tier": {"type": "string", "enum": ["gold", "silver"]}
            }
        });
        assert!(
            check(
                &schema,
                &json!({"customer": {"name": "Ada"}, "tier": "gold"})
            )
            .is_empty()
        );
        assert!(check(&schema, &json!({"customer": {"name": "Ada"}, "tier": null})).is_empty());
        let problems = check(
            &schema,
            &json!({"customer": {"nme": "Ada"}, "tier": "bronze"}),
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`input.customer` lacks `name`")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("`input.tier`")),
            "{problems:?}"
        );
    }
}
